"""The public datasets some tests read (Nosey Parker secret examples, XSTest labels).

They live outside the checkout: ``COGUMI_DATASETS_DIR`` when set, else the
``shared/datasets`` folder beside the checkout (``<repo>/../shared/datasets``),
else ``/work/shared/datasets``. A missing folder fails the test with its path:
these tests are never skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BESIDE_CHECKOUT = ROOT.parent / "shared" / "datasets"
FALLBACK = Path("/work/shared/datasets")


def datasets_dir() -> Path:
    """The folder holding the datasets (fails the test when there is none)."""
    configured = os.environ.get("COGUMI_DATASETS_DIR")
    if configured:
        path = Path(configured)
        if not path.is_dir():
            pytest.fail(
                f"COGUMI_DATASETS_DIR={configured} is not a folder; point it at the "
                "public datasets folder",
                pytrace=False,
            )
        return path
    for path in (BESIDE_CHECKOUT, FALLBACK):
        if path.is_dir():
            return path
    pytest.fail(
        f"the public datasets folder is missing: looked in {BESIDE_CHECKOUT} and {FALLBACK}; "
        "put it there or set COGUMI_DATASETS_DIR",
        pytrace=False,
    )


def dataset(name: str) -> Path:
    """One dataset's folder, e.g. ``dataset("xstest-v2-human-labels")``."""
    path = datasets_dir() / name
    if not path.is_dir():
        pytest.fail(f"dataset {name} is missing: no folder {path}", pytrace=False)
    return path
