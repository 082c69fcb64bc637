"""Output-path checks: segqc replaces only what it wrote (a manifest in its marker), never an input."""

from __future__ import annotations

import errno
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from segqc.atomic import PublishGuard
from segqc.errors import OutputError, write_fault
from segqc.manifests import MARKER, OutputKind, seal, write_marker
from segqc.outputs import check_output_dir, check_output_file, owned_directory, owned_file, owned_member, sidecar_of


def report(folder: Path, heatmaps: tuple[str, ...] = ("a.png",)) -> Path:
    """A report folder as segqc writes it (sealed manifest)."""
    (folder / "heatmaps").mkdir(parents=True)
    (folder / "gallery").mkdir()
    for name in heatmaps:
        (folder / "heatmaps" / name).write_bytes(b"png")
    (folder / "scores.csv").write_text("case_id,heatmap\na,heatmaps/a.png\n")
    (folder / "summary.json").write_text(json.dumps({"segqc_version": "0.1.0"}))
    seal(folder, OutputKind.REPORT)
    return folder


def test_new_empty_and_own_folders_are_accepted(tmp_path: Path) -> None:
    assert check_output_dir(tmp_path / "new" / "report", OutputKind.REPORT) == tmp_path / "new" / "report"
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", OutputKind.REPORT)
    check_output_dir(report(tmp_path / "own"), OutputKind.REPORT)


@pytest.mark.parametrize("intruder, expected", [
    ("notes.txt", "'notes.txt', a file segqc did not write"),
    ("heatmaps/notes.txt", "'heatmaps/notes.txt', a file segqc did not write"),
    ("heatmaps/mine/deep.txt", "'heatmaps/mine', a folder segqc did not write"),
    ("gallery/sub/", "'gallery/sub', a folder segqc did not write"),
], ids=["top-level", "in-a-sub-folder", "deeper", "empty-folder"])
def test_anything_segqc_did_not_write_at_any_depth_blocks(tmp_path: Path, intruder: str, expected: str) -> None:
    folder = report(tmp_path / "report")
    path = folder / intruder
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir() if intruder.endswith("/") else path.write_text("mine\n")
    with pytest.raises(OutputError, match=expected):
        check_output_dir(folder, OutputKind.REPORT)


def test_a_changed_file_or_a_link_blocks(tmp_path: Path) -> None:
    folder = report(tmp_path / "report")
    (folder / "heatmaps" / "a.png").write_bytes(b"edited by the user")
    with pytest.raises(OutputError, match="'heatmaps/a.png', changed since segqc wrote it"):
        check_output_dir(folder, OutputKind.REPORT)
    (folder / "heatmaps" / "a.png").unlink()
    os.symlink(tmp_path, folder / "heatmaps" / "a.png")
    with pytest.raises(OutputError, match="not the file segqc wrote"):
        check_output_dir(folder, OutputKind.REPORT)


@pytest.mark.parametrize("marked", [True, False], ids=["old-marker", "no-marker"])
def test_outputs_written_before_manifests_keep_segqc_layout_only(tmp_path: Path, marked: bool) -> None:
    old = tmp_path / "old"
    (old / "heatmaps").mkdir(parents=True)
    (old / "gallery").mkdir()
    (old / "heatmaps" / "a.png").write_bytes(b"png")
    (old / "scores.csv").write_text("case_id,heatmap,gallery\na,heatmaps/a.png,\n")
    (old / "summary.json").write_text(json.dumps({"segqc_version": "0.1.0"}))
    if marked:
        (old / MARKER).write_text(json.dumps({"kind": "report", "segqc_version": "0.1.0"}))
    check_output_dir(old, OutputKind.REPORT)
    (old / "heatmaps" / "mine.png").write_bytes(b"the user's")  # not listed in scores.csv
    with pytest.raises(OutputError, match="'heatmaps/mine.png', a file segqc did not write"):
        check_output_dir(old, OutputKind.REPORT)


def test_an_old_report_without_marker_or_metadata_is_not_ours(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text(json.dumps({"something": "else"}))
    with pytest.raises(OutputError, match="not written by segqc"):
        check_output_dir(tmp_path / "old", OutputKind.REPORT)


def test_a_marker_of_another_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "segqc.json").write_text("{}")
    seal(tmp_path / "model", OutputKind.MODEL, mode="image")
    with pytest.raises(OutputError, match="as a report"):
        check_output_dir(tmp_path / "model", OutputKind.REPORT)


@pytest.mark.parametrize("recorded", [True, False], ids=["marker", "older-bundle"])
def test_a_model_of_the_other_mode_is_refused(tmp_path: Path, recorded: bool) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "segqc.json").write_text(json.dumps({"format_version": 2, "mode": "tabular"}))
    if recorded:
        seal(model, OutputKind.MODEL, mode="tabular")
    check_output_dir(model, OutputKind.MODEL, mode="tabular")
    with pytest.raises(OutputError, match="holds a model of mode 'tabular' and this command writes one of mode 'image'"):
        check_output_dir(model, OutputKind.MODEL, mode="image")


def test_replacing_removes_only_what_segqc_wrote(tmp_path: Path, caplog) -> None:
    target = report(tmp_path / "report")
    check_output_dir(target, OutputKind.REPORT)
    with owned_directory(target, OutputKind.REPORT) as staging:
        (staging / "scores.csv").write_text("new\n")
        (target / "heatmaps" / "late.txt").write_text("saved by the user while segqc ran\n")
    assert (target / "scores.csv").read_text() == "new\n"
    kept = [path for path in tmp_path.rglob("late.txt")]
    assert len(kept) == 1 and kept[0].read_text().startswith("saved by the user")
    assert "late.txt" in caplog.text and "segqc did not write" in caplog.text
    check_output_dir(target, OutputKind.REPORT)


def test_a_failing_guard_keeps_the_earlier_folder(tmp_path: Path) -> None:
    target = report(tmp_path / "report")

    @contextmanager
    def failing_commit():
        yield
        raise OSError("commit failed")

    guard = PublishGuard()
    with pytest.raises(OSError, match="commit failed"), \
            owned_directory(target, OutputKind.REPORT, guard=guard) as staging:
        (staging / "scores.csv").write_text("new\n")
        guard.add(failing_commit())
    assert (target / "scores.csv").read_text().startswith("case_id")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    check_output_dir(target, OutputKind.REPORT)


def test_a_demo_folder_checks_its_parts_through_their_own_manifests(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    demo.mkdir()
    write_marker(demo, OutputKind.DEMO, {"data": OutputKind.DATA, "report": OutputKind.REPORT})
    report(demo / "report")
    check_output_dir(demo, OutputKind.DEMO)
    (demo / "report" / "notes.txt").write_text("mine\n")
    with pytest.raises(OutputError, match="'report/notes.txt', a file segqc did not write"):
        check_output_dir(demo, OutputKind.DEMO)


def test_owned_member_keeps_the_manifest_true(tmp_path: Path) -> None:
    folder = report(tmp_path / "report")
    with owned_member(folder, "report.html") as temporary:
        temporary.write_text("<html>")
    check_output_dir(folder, OutputKind.REPORT)


@pytest.mark.parametrize("relation, out, given", [("is", "in", "in"), ("lies inside", "in/out", "in"),
                                                  ("contains", "in", "in/file.csv")])
def test_outputs_overlapping_inputs_are_refused(tmp_path: Path, relation: str, out: str, given: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "file.csv").write_text("a\n")
    with pytest.raises(OutputError, match=f"{relation} the input"):
        check_output_dir(tmp_path / out, OutputKind.MODEL, [None, tmp_path / given])


def test_symbolic_links_and_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(OutputError, match="symbolic link"):
        check_output_dir(tmp_path / "link", OutputKind.REPORT)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_output_dir(tmp_path / "file", OutputKind.REPORT)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "file" / "deeper" / "report", OutputKind.REPORT)


def test_scores_file_segqc_wrote_is_replaced_and_nothing_else(tmp_path: Path) -> None:
    scores = tmp_path / "scores.csv"
    check_output_file(scores)
    with owned_file(scores) as temporary:
        temporary.write_text("row,score\n0,1.5\n")
    assert sidecar_of(scores).is_file()
    check_output_file(scores)
    scores.write_text("row,score,my_note\n0,1.5,keep me\n")
    with pytest.raises(OutputError, match="changed since segqc wrote it"):
        check_output_file(scores)
    with pytest.raises(OutputError, match="is the input"):
        check_output_file(scores, [scores])
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path)


@pytest.mark.parametrize("header, accepted", [
    ("row,score,rank,verdict,unseen_categories,norm_1", True),
    ("id,score,rank,verdict,unseen_categories,top_column,top_share,norm_1,norm_2", True),
    ("id,score,rank,verdict,unseen_categories,top_column,top_share,norm_1,norm_2,my_note", False),
    ("score,rank,verdict,unseen_categories", False),
    ("item,amount", False),
], ids=["0.1-scores", "scores", "scores-with-added-column", "no-norms", "a-budget"])
def test_scores_files_written_before_sidecars(tmp_path: Path, header: str, accepted: bool) -> None:
    scores = tmp_path / "scores.csv"
    scores.write_text(header + "\n")
    if accepted:
        check_output_file(scores)
    else:
        with pytest.raises(OutputError, match="not a scores file written by segqc"):
            check_output_file(scores)


def test_a_crash_while_a_scores_file_is_swapped_leaves_it_ours(tmp_path: Path, monkeypatch) -> None:
    scores = tmp_path / "scores.csv"
    with owned_file(scores) as temporary:
        temporary.write_text("old\n")

    def crash(*_args) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt), owned_file(scores) as temporary:
        temporary.write_text("new\n")
    monkeypatch.undo()
    assert scores.read_text() == "old\n"
    check_output_file(scores)


def test_pipes_and_devices_are_written_as_they_are_never_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert check_output_file(fifo) == fifo  # reading it back would block until a writer appeared
    assert check_output_file("/dev/null") == Path("/dev/null")
    with owned_file("/dev/null") as target:
        assert target == Path("/dev/null")
        target.write_text("thrown away\n")
    assert not sidecar_of(Path("/dev/null")).exists()


def test_marker_is_written(tmp_path: Path) -> None:
    write_marker(tmp_path, OutputKind.MASKS)
    assert json.loads((tmp_path / MARKER).read_text())["kind"] == "masks"


def test_replacing_logs_nothing_when_all_was_ours(tmp_path: Path, caplog) -> None:
    target = report(tmp_path / "report")
    with caplog.at_level(logging.WARNING), owned_directory(target, OutputKind.REPORT) as staging:
        (staging / "scores.csv").write_text("new\n")
    assert caplog.text == "" and sorted(p.name for p in tmp_path.iterdir()) == ["report"]


@pytest.mark.parametrize("error, expected", [
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "quota"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only"),
    (OSError(errno.EFBIG, "File too large"), "ulimit -f"),
    (RuntimeError("Error while serializing: I/O error: File too large (os error 27)"), "ulimit -f"),
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"), "came up short"),
    (OSError(errno.ENOENT, "No such file"), None),
    (ValueError("a bug"), None),
], ids=["disk-full", "quota", "read-only", "size-limit", "safetensors", "torch", "other-os-error", "a-bug"])
def test_environment_faults_while_writing_are_bad_input(tmp_path: Path, error: Exception,
                                                        expected: str | None) -> None:
    fault = write_fault(error, tmp_path / "out")
    assert (fault is None) == (expected is None)
    if fault is not None:
        assert str(fault).startswith(f"{tmp_path / 'out'}: cannot write") and expected in str(fault)


def test_the_outermost_write_names_the_output(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=f"^{tmp_path / 'report'}: cannot write"), \
            owned_directory(tmp_path / "report", OutputKind.REPORT) as staging, \
            owned_member(staging, "report.html"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [".", "..", ""])
def test_a_path_that_does_not_name_its_output_is_refused(name: str) -> None:
    for check in (lambda: check_output_dir(name, OutputKind.REPORT), lambda: check_output_file(name)):
        with pytest.raises(OutputError, match="name the output itself"):
            check()


def test_long_valid_names_are_written_and_too_long_ones_refused_up_front(tmp_path: Path) -> None:
    longest = os.pathconf(tmp_path, "PC_NAME_MAX") - len("." + MARKER)
    scores, folder = tmp_path / ("s" * (longest - 4) + ".csv"), tmp_path / ("r" * longest)
    with owned_file(check_output_file(scores)) as temporary:
        temporary.write_text("row,score\n0,1.5\n")
    with owned_directory(check_output_dir(folder, OutputKind.REPORT), OutputKind.REPORT) as staging:
        (staging / "report.html").write_text("<html></html>")
    for _ in range(2):  # written, then replaced through the same temporary names
        with owned_file(check_output_file(scores)) as temporary:
            temporary.write_text("row,score\n0,2.5\n")
    assert scores.read_text() == "row,score\n0,2.5\n" and (folder / "report.html").is_file()
    for path in (tmp_path / ("s" * longest + ".csv"), tmp_path / ("r" * (longest + 1))):
        with pytest.raises(OutputError, match="use a shorter name"):
            check_output_file(path) if path.suffix else check_output_dir(path, OutputKind.REPORT)


def test_a_name_too_long_for_the_file_system_is_bad_input(tmp_path: Path) -> None:
    fault = write_fault(OSError(errno.ENAMETOOLONG, "File name too long"), tmp_path / "out")
    assert fault is not None and "longer than the file system allows" in str(fault)
