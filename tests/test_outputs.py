"""Output-path checks: segqc replaces only what it wrote, never an input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from segqc.errors import OutputError
from segqc.outputs import MARKER, OutputKind, check_output_dir, check_output_file, write_marker


def test_new_empty_and_own_folders_are_accepted(tmp_path: Path) -> None:
    assert check_output_dir(tmp_path / "new" / "report", OutputKind.REPORT) == tmp_path / "new" / "report"
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", OutputKind.REPORT)
    (tmp_path / "own").mkdir()
    write_marker(tmp_path / "own", OutputKind.REPORT)
    (tmp_path / "own" / "scores.csv").write_text("case_id\n")
    (tmp_path / "own" / "heatmaps").mkdir()
    check_output_dir(tmp_path / "own", OutputKind.REPORT)


@pytest.mark.parametrize("kind, metadata", [(OutputKind.REPORT, ("summary.json", {"segqc_version": "0.1.0"})),
                                            (OutputKind.MODEL, ("segqc.json", {"format_version": 1}))])
def test_outputs_of_an_older_segqc_are_recognised(tmp_path: Path, kind: OutputKind, metadata) -> None:
    name, content = metadata
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / name).write_text(json.dumps(content))
    check_output_dir(tmp_path / "old", kind)
    (tmp_path / "old" / name).write_text(json.dumps({"something": "else"}))
    with pytest.raises(OutputError, match="not written by segqc"):
        check_output_dir(tmp_path / "old", kind)


def test_a_marker_of_another_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    write_marker(tmp_path / "model", OutputKind.MODEL)
    (tmp_path / "model" / "segqc.json").write_text("{}")
    with pytest.raises(OutputError, match="as a report"):
        check_output_dir(tmp_path / "model", OutputKind.REPORT)


def test_a_users_file_inside_own_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "report").mkdir()
    write_marker(tmp_path / "report", OutputKind.REPORT)
    (tmp_path / "report" / "my-notes.md").write_text("!")
    with pytest.raises(OutputError, match="holds 'my-notes.md'"):
        check_output_dir(tmp_path / "report", OutputKind.REPORT)


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


def test_scores_file(tmp_path: Path) -> None:
    check_output_file(tmp_path / "scores.csv")
    (tmp_path / "scores.csv").write_text("row,score,rank,verdict,unseen_categories,norm_1\n")
    check_output_file(tmp_path / "scores.csv")
    (tmp_path / "budget.csv").write_text("item,amount\n")
    with pytest.raises(OutputError, match="not a scores file"):
        check_output_file(tmp_path / "budget.csv")
    with pytest.raises(OutputError, match="is the input"):
        check_output_file(tmp_path / "scores.csv", [tmp_path / "scores.csv"])
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path)


def test_marker_is_written(tmp_path: Path) -> None:
    write_marker(tmp_path, OutputKind.MASKS)
    assert json.loads((tmp_path / MARKER).read_text())["kind"] == "masks"
