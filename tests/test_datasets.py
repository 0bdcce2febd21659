"""The datasets folder is found through one helper, and a missing one fails by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import datasets


def test_env_var_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "xstest-v2-human-labels").mkdir()
    monkeypatch.setenv("COGUMI_DATASETS_DIR", str(tmp_path))
    assert datasets.datasets_dir() == tmp_path
    assert datasets.dataset("xstest-v2-human-labels") == tmp_path / "xstest-v2-human-labels"


def test_a_missing_dataset_fails_naming_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COGUMI_DATASETS_DIR", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match=re.escape(str(tmp_path / "nope"))):
        datasets.dataset("nope")
    gone = tmp_path / "gone"
    monkeypatch.setenv("COGUMI_DATASETS_DIR", str(gone))
    with pytest.raises(pytest.fail.Exception, match=re.escape(f"COGUMI_DATASETS_DIR={gone}")):
        datasets.datasets_dir()


def test_default_is_beside_the_checkout_then_the_shared_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COGUMI_DATASETS_DIR", raising=False)
    assert datasets.ROOT.parent / "shared" / "datasets" == datasets.BESIDE_CHECKOUT
    monkeypatch.setattr(datasets, "BESIDE_CHECKOUT", tmp_path / "beside")
    monkeypatch.setattr(datasets, "FALLBACK", tmp_path / "fallback")
    with pytest.raises(pytest.fail.Exception, match=re.escape(str(tmp_path / "beside"))):
        datasets.datasets_dir()
    (tmp_path / "fallback").mkdir()
    assert datasets.datasets_dir() == tmp_path / "fallback"
    (tmp_path / "beside").mkdir()
    assert datasets.datasets_dir() == tmp_path / "beside"
