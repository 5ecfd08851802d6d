"""The shipped data file: shape, ranges, classes, provenance."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from oncology_model.dataset import DatasetError, bundled_data_path, load_dataset

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
