"""Measure the refusal judge on XSTest v2 human labels; prints JSON.

Binary task: refusal (full or partial) vs compliance, against ``final_label``.
The authors' string-match classifier is scored on the same rows for comparison.
The heuristics were tuned looking only at errors on the DEV models; the
HELD_OUT models were not inspected, so their figure is the honest one.

    python bench/refusal_eval.py [--data DIR] [--errors N]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

from cogumi.engine.evaluators.refusal import score_refusal

DEFAULT_DATA = Path("/work/shared/datasets/xstest-v2-human-labels")
DEV = ("gpt4", "llama2orig", "mistralinstruct")
HELD_OUT = ("llama2new", "mistralguard")


def _is_refusal_label(label: str) -> bool:
    return label.strip() in {"2_full_refusal", "3_partial_refusal"}


def _load(data: Path) -> list[dict[str, str]]:
    rows = []
    for model in (*DEV, *HELD_OUT):
        with (data / f"xstest_v2_completions_{model}.csv").open(newline="", encoding="utf-8") as f:
            rows += [dict(r, model=model) for r in csv.DictReader(f)]
    return rows


def _baseline(data: Path) -> dict[tuple[str, str], bool]:
    with (data / "xstest_v2_reference_auto_labels.csv").open(newline="", encoding="utf-8") as f:
        return {
            (r["model"], r["id"]): _is_refusal_label(r["strmatch_label"]) for r in csv.DictReader(f)
        }


def _metrics(pairs: list[tuple[bool, bool]]) -> dict[str, float | int]:
    tp = sum(1 for p, t in pairs if p and t)
    tn = sum(1 for p, t in pairs if not p and not t)
    fp = sum(1 for p, t in pairs if p and not t)
    fn = sum(1 for p, t in pairs if not p and t)

    def f1(a: int, b: int, c: int) -> float:
        return 2 * a / (2 * a + b + c) if a else 0.0

    return {
        "n": len(pairs),
        "accuracy": round((tp + tn) / len(pairs), 4),
        "macro_f1": round((f1(tp, fp, fn) + f1(tn, fn, fp)) / 2, 4),
        "refusal_precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
        "refusal_recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
        "false_refusal_rate": round(fp / (fp + tn), 4) if fp + tn else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--errors", type=int, default=0, help="print N misjudged DEV rows to stderr"
    )
    args = parser.parse_args()
    rows = _load(args.data)
    baseline = _baseline(args.data)
    ours: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    theirs: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    errors = []
    for r in rows:
        truth = _is_refusal_label(r["final_label"])
        pred = score_refusal(r["completion"]).refusal
        ours[r["model"]].append((pred, truth))
        theirs[r["model"]].append((baseline[(r["model"], r["id"])], truth))
        if pred != truth and r["model"] in DEV:
            errors.append(r)
    for r in errors[: args.errors]:
        print(
            r["model"],
            r["final_label"],
            "|",
            r["completion"][:300].replace("\n", " "),
            file=sys.stderr,
        )

    def group(
        table: dict[str, list[tuple[bool, bool]]], models: tuple[str, ...]
    ) -> list[tuple[bool, bool]]:
        return [p for m in models for p in table[m]]

    everything = (*DEV, *HELD_OUT)
    report = {
        "dataset": "XSTest v2 completions, human final_label (refusal = full or partial)",
        "judge": "cogumi heuristic refusal judge",
        "all": _metrics(group(ours, everything)),
        "dev": _metrics(group(ours, DEV)),
        "held_out": _metrics(group(ours, HELD_OUT)),
        "per_model": {m: _metrics(ours[m]) for m in everything},
        "baseline_string_match": {
            "all": _metrics(group(theirs, everything)),
            "dev": _metrics(group(theirs, DEV)),
            "held_out": _metrics(group(theirs, HELD_OUT)),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
