"""Reading tables, inferring column types and encoding rows."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from segqc.data.tables import read_table
from segqc.data.tabular import MISSING, encode, infer_schema
from segqc.errors import ConfigError, InputError, SchemaError


def test_inference_types_and_overrides() -> None:
    frame = pd.DataFrame({"text": list("abcab") * 4, "flag": [True, False] * 10, "small_int": [1, 2, 3, 4] * 5,
                          "float": np.linspace(0, 1, 20), "big_int": np.arange(20) * 7})
    schema = infer_schema(frame, max_integer_categories=5)
    assert [c.name for c in schema.categorical] == ["text", "flag", "small_int"]
    assert [c.name for c in schema.continuous] == ["float", "big_int"]
    forced = infer_schema(frame, categorical=["big_int"], continuous=["small_int"], ignore=["text"])
    assert "big_int" in [c.name for c in forced.categorical]
    assert "small_int" in [c.name for c in forced.continuous]
    assert "text" not in forced.columns


def test_unknown_override_column_suggests_a_name() -> None:
    frame = pd.DataFrame({"colour": list("ab") * 10, "size": np.arange(20.0)})
    with pytest.raises(SchemaError, match="did you mean 'colour'"):
        infer_schema(frame, categorical=["color"])
    with pytest.raises(ConfigError, match="both"):
        infer_schema(frame, categorical=["size"], continuous=["size"])


def test_constant_and_empty_columns_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    frame = pd.DataFrame({"keep": list("ab") * 10, "constant": ["x"] * 20, "empty": [np.nan] * 20})
    with caplog.at_level(logging.WARNING):
        schema = infer_schema(frame)
    assert schema.columns == ["keep"]
    assert set(schema.dropped) == {"constant", "empty"}
    assert "constant" in caplog.text and "empty" in caplog.text


def test_no_usable_columns_is_an_error() -> None:
    frame = pd.DataFrame({"empty": [np.nan] * 5, "constant": [1] * 5})
    with pytest.raises(SchemaError, match="no usable columns.*every value is missing"):
        infer_schema(frame)


def test_identifier_like_text_is_dropped() -> None:
    frame = pd.DataFrame({"uid": [f"id{i}" for i in range(300)], "kind": list("ab") * 150})
    assert "uid" in infer_schema(frame).dropped


def test_nested_columns_are_dropped_and_refused_as_variables(tmp_path) -> None:
    pd.DataFrame({"kind": list("ab") * 15, "tags": [[1, 2], [3]] * 15, "record": [{"a": 1}] * 30}).to_parquet(
        tmp_path / "nested.parquet")
    frame = read_table(tmp_path / "nested.parquet")
    schema = infer_schema(frame)
    assert schema.columns == ["kind"] and "lists or records" in schema.dropped["tags"]
    with pytest.raises(SchemaError, match="column 'tags': holds lists or records"):
        infer_schema(frame, categorical=["tags"])


def test_rows_longer_than_the_header_are_refused_not_shifted(tmp_path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("id,color,x\n" + "r0,blue,0.75,v\n" * 30)
    with pytest.raises(InputError, match="more fields than the header's 3 column names"):
        read_table(path)


def test_missing_values_and_unseen_categories(caplog: pytest.LogCaptureFixture) -> None:
    frame = pd.DataFrame({"kind": ["a", "b", None, "a"] * 5, "value": [1.5, np.nan, 3.25, 4.75] * 5})
    schema = infer_schema(frame)
    assert MISSING in schema.categorical[0].categories
    assert schema.continuous[0].missing_indicator and schema.cardinalities == [3, 2]
    encoded = encode(frame, schema)
    assert encoded.codes.shape == (20, 2) and encoded.continuous.shape == (20, 1)
    assert np.isfinite(encoded.continuous).all()
    assert encoded.codes[1, 1] == 1 and encoded.codes[0, 1] == 0  # missing indicator
    new = pd.DataFrame({"kind": ["a", "zebra"], "value": [1.0, 2.0]})
    with caplog.at_level(logging.WARNING):
        encoded = encode(new, schema, where="new.csv")
    assert encoded.codes[:, 0].tolist() == [schema.categorical[0].categories.index("a"), -1]
    assert encoded.unseen == {"kind": 1}
    assert "unseen" in caplog.text and "'zebra'" in caplog.text


def test_integer_categories_survive_float_parsing() -> None:
    schema = infer_schema(pd.DataFrame({"level": [1, 2, 3] * 7}))
    encoded = encode(pd.DataFrame({"level": [1.0, 3.0, np.nan]}), schema)
    assert encoded.codes[:2, 0].tolist() == [0, 2] and encoded.codes[2, 0] == -1


def test_encode_names_missing_and_non_numeric_columns() -> None:
    schema = infer_schema(pd.DataFrame({"kind": list("ab") * 10, "value": np.arange(20.0) + 0.5}))
    with pytest.raises(SchemaError, match="missing column.*'value'"):
        encode(pd.DataFrame({"kind": ["a"]}), schema, where="x.csv")
    with pytest.raises(SchemaError, match="column 'value' in x.csv: expected numbers, found 'oops'"):
        encode(pd.DataFrame({"kind": ["a"], "value": ["oops"]}), schema, where="x.csv")


def test_gaussianized_columns_follow_normal_scores_and_extrapolate() -> None:
    rng = np.random.default_rng(0)
    income = np.exp(rng.normal(10, 1, 2000))  # skewed
    frame = pd.DataFrame({"income": income})
    assert not infer_schema(frame).continuous[0].knots  # standardised unless asked
    schema = infer_schema(frame, gaussianize=True)
    values = encode(frame, schema).continuous[:, 0]
    assert abs(float(pd.Series(values).skew())) < 0.1 and abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.05
    new = encode(pd.DataFrame({"income": [income.min() / 2, np.median(income), income.max() * 2]}), schema)
    low, middle, high = new.continuous[:, 0]
    assert low < values.min() and abs(middle) < 0.05 and high > values.max()
    assert type(schema).from_dict(schema.to_dict()) == schema


def test_schema_round_trips_through_a_dict() -> None:
    schema = infer_schema(pd.DataFrame({"kind": list("ab") * 10, "value": np.arange(20.0) + 0.5}), id_column=None)
    assert type(schema).from_dict(schema.to_dict()) == schema


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty file"),
    (b"a,b,c\n", "header but no data rows"),
    (b"a,b\n1,2\n\xff\xfe,3\n", "not UTF-8"),
    (b'a,b\n1,2\n3,4,5,6\n', "malformed CSV"),
    (b"\n\n", "no columns"),
])
def test_bad_files_give_one_clear_error(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_table(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_directory_and_missing_paths(tmp_path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        read_table(tmp_path)
    with pytest.raises(InputError, match="file not found"):
        read_table(tmp_path / "nope.csv")


def test_parquet_and_tsv(tmp_path) -> None:
    frame = pd.DataFrame({"kind": list("ab") * 3, "value": np.arange(6.0)})
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), frame)
    assert read_table(tmp_path / "t.tsv").shape == (6, 2)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="cannot read as Parquet"):
        read_table(tmp_path / "broken.parquet")


@pytest.mark.parametrize(("name", "text", "delimiter"), [
    ("semi.csv", "kind;value\na;1,5\nb;2,5\n", ";"),
    ("tab.csv", "kind\tvalue\na\t1.5\nb\t2.5\n", "\t"),
    ("pipe.csv", "kind|value\na|1.5\nb|2.5\n", "|"),
    ("comma.tsv", "kind,value\na,1.5\nb,2.5\n", ","),
])
def test_other_delimiters_are_detected_with_a_warning(tmp_path, caplog: pytest.LogCaptureFixture, name: str,
                                                      text: str, delimiter: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="segqc.data.tabular"):
        frame = read_table(path)
    assert list(frame.columns) == ["kind", "value"] and frame["kind"].tolist() == ["a", "b"]
    assert f"{path}: read with {delimiter!r} as the column delimiter" in caplog.text


@pytest.mark.parametrize(("name", "text", "columns"), [
    ("quoted.csv", '"weight;kg",kind\n"1;2",a\n"3;4",b\n', ["weight;kg", "kind"]),
    ("quoted_last.csv", 'kind,"a;b;c;d"\na,1\nb,2\n', ["kind", "a;b;c;d"]),
    ("mixed.tsv", "kind\tprice,eur,usd\na\t1\nb\t2\n", ["kind", "price,eur,usd"]),
    ("single.csv", "value\n1.5\n2.5\n", ["value"]),
    ("single.tsv", "value\n1.5\n2.5\n", ["value"]),
])
def test_usual_delimiter_is_kept_without_a_warning(tmp_path, caplog: pytest.LogCaptureFixture, name: str,
                                                   text: str, columns: list[str]) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="segqc.data.tabular"):
        frame = read_table(path)
    assert list(frame.columns) == columns and len(frame) == 2
    assert "delimiter" not in caplog.text


def test_semicolon_header_with_quoted_comma_is_read_with_semicolons(tmp_path) -> None:
    path = tmp_path / "eu.csv"
    path.write_text('"price, eur";kind\n1;a\n2;b\n', encoding="utf-8")
    assert list(read_table(path).columns) == ["price, eur", "kind"]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("dup.csv", "id,age,x,y,age\n1,2,3,4,5\n",
     "dup.csv: column name 'age' appears 2 times (columns 2 and 5); column names must be unique"),
    ("dup_semi.csv", "a;b;a;a\n1;2;3;4\n", "dup_semi.csv: column name 'a' appears 3 times (columns 1, 3 and 4)"),
    ("dup_bom.csv", "\ufeffa,b,a\n1,2,3\n", "dup_bom.csv: column name 'a' appears 2 times (columns 1 and 3)"),
])
def test_duplicate_column_names_in_a_file_are_refused(tmp_path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SchemaError) as info:
        read_table(path)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_duplicate_column_names_in_parquet_are_refused(tmp_path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.table([[1, 2], [3, 4], [5, 6]], names=["age", "x", "age"]), path)
    with pytest.raises(SchemaError) as info:
        read_table(path)
    assert str(info.value) == f"{path}: column name 'age' appears 2 times (columns 1 and 3); column names must be unique"


def test_unnamed_columns_are_not_duplicates(tmp_path) -> None:
    path = tmp_path / "unnamed.csv"
    path.write_text(",a,\n1,2,3\n", encoding="utf-8")
    assert read_table(path).shape == (1, 3)


def test_duplicate_column_names_in_a_dataframe_are_refused() -> None:
    from segqc.detectors.tabular import TabularQC

    frame = pd.DataFrame([[1, "a", 3]] * 30, columns=["age", "kind", "age"])
    with pytest.raises(SchemaError) as info:
        TabularQC().fit(frame)
    assert str(info.value) == ("input table: column name 'age' appears 2 times (columns 1 and 3); "
                               "column names must be unique")
