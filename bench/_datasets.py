"""Where the public datasets live, for the evaluation scripts: ``COGUMI_DATASETS_DIR``
when set, else ``shared/datasets`` beside the checkout, else ``/work/shared/datasets``
(the same order as the tests' ``tests/datasets.py``)."""

from __future__ import annotations

import os
from pathlib import Path

BESIDE_CHECKOUT = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FALLBACK = Path("/work/shared/datasets")


def datasets_dir() -> Path:
    configured = os.environ.get("COGUMI_DATASETS_DIR")
    if configured:
        return Path(configured)
    return next((p for p in (BESIDE_CHECKOUT, FALLBACK) if p.is_dir()), BESIDE_CHECKOUT)
