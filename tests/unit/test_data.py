"""The shipped data file: shape, ranges, classes, provenance."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from oncology_model.dataset import (
    UCI_COLUMNS,
    DatasetError,
    bundled_data_path,
    load_dataset,
    load_datasets,
)

UCI_MD5 = "52b89051b9bd37a91a54e8570b963719"  # from the data README


def test_shipped_file_is_the_uci_original() -> None:
    raw = bundled_data_path().read_bytes()
    assert hashlib.md5(raw, usedforsecurity=False).hexdigest() == UCI_MD5
    lines = raw.decode("ascii").splitlines()
    assert len(lines) == 699
    assert {len(line.split(",")) for line in lines} == {11}


def test_values_in_range_and_classes_balanced_as_documented() -> None:
    data = load_dataset()
    assert data.X.shape == (699, 9)
    measured = data.X[~np.isnan(data.X)]
    assert measured.min() == 1 and measured.max() == 10
    assert int(np.isnan(data.X).sum()) == 16
    assert np.isnan(data.X[:, 5]).sum() == 16  # all missing values are bare_nuclei
    assert (int((data.y == 0).sum()), int((data.y == 1).sum())) == (458, 241)
    assert len(np.unique(data.sample_ids)) < 699  # ids repeat: hence grouped CV


def test_attribution_ships_with_the_data() -> None:
    readme = bundled_data_path().with_name("README.md").read_text()
    assert "Wolberg" in readme and "CC BY 4.0" in readme


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1000025,5,1,1,1,2,1,3,1,2", "expected 11 columns"),
        ("1000025,5,1,1,1,2,1,3,1,11,2", "mitoses 11 is outside 1..10"),
        ("1000025,5,1,1,1,2,x,3,1,1,2", "bare_nuclei 'x' is not an integer"),
        ("1000025,5,1,1,1,2,1,3,1,1,3", "class '3' is not 2 or 4"),
    ],
)
def test_bad_files_are_rejected_naming_line_and_rule(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "bad.data"
    path.write_text("1000025,5,1,1,1,2,1,3,1,1,2\n" + line + "\n")
    with pytest.raises(DatasetError, match=rf"line 2: {message}"):
        load_dataset(path=path)


def headered(path, order: list[str], *, empty_for_missing: bool = True) -> None:
    """The bundled data rewritten as a headered CSV with columns in `order`."""
    rows = [line.split(",") for line in bundled_data_path().read_text().splitlines()]
    names = list(UCI_COLUMNS)
    lines = [",".join(order)]
    for cells in rows:
        by_name = dict(zip(names, cells, strict=True))
        if empty_for_missing:
            by_name = {k: ("" if v == "?" else v) for k, v in by_name.items()}
        lines.append(",".join(by_name[name] for name in order))
    path.write_text("\n".join(lines) + "\n")


def test_headered_file_in_any_order_reads_as_the_uci_file(tmp_path) -> None:
    path = tmp_path / "export.csv"
    order = [UCI_COLUMNS[-1], *reversed(UCI_COLUMNS[1:-1]), UCI_COLUMNS[0]]
    headered(path, order)
    expected, actual = load_dataset(), load_dataset(path=path)
    assert np.array_equal(actual.X, expected.X, equal_nan=True)
    assert np.array_equal(actual.y, expected.y)
    assert np.array_equal(actual.sample_ids, expected.sample_ids)
    assert actual.source == "export.csv"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("sample_code_number,clump_thickness,class", r"line 1: the header .* mitoses is missing"),
        (",".join([*UCI_COLUMNS, "notes"]), r"line 1: .*'notes' is not a column"),
        (",".join([*UCI_COLUMNS, "mitoses"]), r"line 1: .*mitoses appears twice"),
    ],
)
def test_bad_headers_are_named(tmp_path, header: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(header + "\n1,2,3\n")
    with pytest.raises(DatasetError, match=message):
        load_dataset(path=path)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ["", "1000025,5,1,1,1,2,1,3,1,1,2", "", "1000025,5,1,1,1,2,1,3,1,99,2"],
            "line 4: mitoses 99",
        ),
        (["1000025,5,1,1,1,2,1,3,1,1,2,7"], "line 1: expected 11 columns, found 12"),
        (["1000025,5,1,1,1,2,,3,1,1,2"], "line 1: bare_nuclei '' is not an integer"),
        (['1000025,"5,1,1,1,2,1,3,1,1,2'], "line 1: a quoted cell is not closed"),
        (
            ["1000025,5,1,1,1,2,1,3,1,1,2", "1000025,x,1,1,1,2,1,3,1,0,2"],
            "line 2: clump_thickness 'x'",
        ),
        (
            ["1000025,5,1,1,1,2,1,3,1,1,2", "x,5,1,1,1,2,1,3,1,1,9"],
            "line 2: sample_code_number 'x'",
        ),
    ],
)
def test_errors_name_the_physical_line_and_the_first_bad_cell(
    tmp_path, lines: list[str], message: str
) -> None:
    path = tmp_path / "bad.data"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"bad.data, {message}"):
        load_dataset(path=path)


def test_byte_order_mark_and_crlf_are_read(tmp_path) -> None:
    path = tmp_path / "excel.csv"
    headered(path, list(UCI_COLUMNS))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert np.array_equal(load_dataset(path=path).X, load_dataset().X, equal_nan=True)


def test_empty_files_have_no_rows(tmp_path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("\n" + ",".join(UCI_COLUMNS) + "\n\n")
    with pytest.raises(DatasetError, match="no rows"):
        load_dataset(path=path)


def test_a_headered_file_may_name_samples_by_text(tmp_path) -> None:
    """Exported cases are named by prediction id: text codes are kept as text, integer codes
    stay integers (the bundled file's grouped folds do not change), and together both are text."""
    header = ",".join(UCI_COLUMNS)
    path = tmp_path / "cases.csv"
    path.write_text(f"{header}\nab-1,5,1,1,1,2,,3,1,1,2\nab-2,10,9,9,8,7,10,9,7,1,4\n")
    data = load_dataset(path=path)
    assert list(data.sample_ids) == ["ab-1", "ab-2"] and data.sample_ids.dtype == object
    assert load_dataset().sample_ids.dtype == np.int64
    both = load_datasets([bundled_data_path(), path])
    assert both.sample_ids[0] == "1000025" and both.sample_ids[-1] == "ab-2"
    path.write_text(f"{header}\nab-1,5,1,1,1,2,,3,1,1,2\n ,5,1,1,1,2,1,3,1,1,2\n")
    with pytest.raises(DatasetError, match="line 3: sample_code_number is empty"):
        load_dataset(path=path)
