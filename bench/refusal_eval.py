"""Measure the refusal judge on XSTest v2 human labels; prints JSON.

Binary task: refusal (full or partial) vs compliance, against ``final_label``.
The authors' string-match classifier is scored on the same rows for comparison.
The heuristics were tuned looking only at errors on the DEV models; the
HELD_OUT models were not inspected, so their figure is the honest one.

With ``--judge-url`` (any OpenAI-compatible API, as ``COGUMI_JUDGE_BASE_URL``)
the optional LLM judge is also asked about the rows (``--limit N`` of them,
spread over the five models), exactly as the engine asks it (redacted reply
only). The engine never lets the judge change a verdict, so the product's
accuracy stays the heuristic figure; what the judge adds is measured as
second-opinion figures: how often the heuristics were right when the judge
agreed (the confidence it raises), and how many disagreements (review flags)
pointed at a real heuristic error. The API key is read from the environment
variable named by ``--judge-key-env``, never from the command line.

    python bench/refusal_eval.py [--data DIR] [--errors N]
    COGUMI_JUDGE_API_KEY=... python bench/refusal_eval.py --judge-url https://api.openai.com/v1 \
        --judge-model gpt-4o-mini [--limit 500] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from _datasets import datasets_dir
from pydantic import SecretStr

from cogumi.engine.evaluators.refusal import score_refusal
from cogumi.engine.judge import JudgeUnavailable, LlmJudge, Opinion
from cogumi.engine.second_opinion import UNCERTAIN_HIGH, UNCERTAIN_LOW, judge_text

DEFAULT_DATA = datasets_dir() / "xstest-v2-human-labels"
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
    if not pairs:
        return {"n": 0}
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
    parser.add_argument("--judge-url", help="base URL of an OpenAI-compatible API to ask too")
    parser.add_argument("--judge-model", default="", help="model name for the judge")
    parser.add_argument(
        "--judge-key-env", default="COGUMI_JUDGE_API_KEY",
        help="environment variable holding the judge's API key",
    )  # fmt: skip
    parser.add_argument("--judge-timeout", type=float, default=30.0, help="seconds per answer")
    parser.add_argument("--limit", type=int, default=0, help="rows to ask the judge (0: all)")
    parser.add_argument("--concurrency", type=int, default=4, help="judge calls in flight")
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
    if args.judge_url:
        report["llm_judge"] = asyncio.run(_judge_report(rows, args))
    print(json.dumps(report, indent=2))


def _spread(rows: list[dict[str, str]], limit: int) -> list[dict[str, str]]:
    """``limit`` rows evenly spread over the file order (every model), or all of them."""
    if limit <= 0 or limit >= len(rows):
        return rows
    return [rows[i * len(rows) // limit] for i in range(limit)]


async def _ask_all(rows: list[dict[str, str]], args: argparse.Namespace) -> list[Opinion | str]:
    key = os.environ.get(args.judge_key_env)
    judge = LlmJudge(
        base_url=args.judge_url.rstrip("/"), model=args.judge_model,
        api_key=SecretStr(key) if key else None, timeout_sec=args.judge_timeout,
    )  # fmt: skip
    gate = asyncio.Semaphore(max(1, args.concurrency))

    async def one(row: dict[str, str]) -> Opinion | str:
        async with gate:
            try:
                return await judge.opinion(judge_text(row["completion"]))
            except JudgeUnavailable as exc:
                return exc.reason

    try:
        return list(await asyncio.gather(*(one(r) for r in rows)))
    finally:
        await judge.aclose()


async def _judge_report(rows: list[dict[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    picked = _spread(rows, args.limit)
    answers = await _ask_all(picked, args)
    heard = []  # (heuristic, judge, truth, uncertain)
    for row, answer in zip(picked, answers, strict=True):
        if isinstance(answer, Opinion):
            score = score_refusal(row["completion"])
            uncertain = UNCERTAIN_LOW < score.score < UNCERTAIN_HIGH
            heard.append(
                (score.refusal, answer.refusal, _is_refusal_label(row["final_label"]), uncertain)
            )
    agree = [h for h in heard if h[0] == h[1]]
    disagree = [h for h in heard if h[0] != h[1]]
    heuristic_errors = [h for h in heard if h[0] != h[2]]
    band = [h for h in heard if h[3]]

    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return {
        "model": args.judge_model,
        "rows_asked": len(picked),
        "answered": len(heard),
        "failures": dict(Counter(a for a in answers if isinstance(a, str))),
        "judge_alone": _metrics([(j, t) for _, j, t, _ in heard]),
        "heuristics_same_rows": _metrics([(h, t) for h, _, t, _ in heard]),
        "uncertain_band": {
            "rows": len(band),
            "judge_alone": _metrics([(j, t) for _, j, t, _ in band]),
            "heuristics": _metrics([(h, t) for h, _, t, _ in band]),
        },
        "second_opinion": {
            "note": "verdicts never change: product accuracy is the heuristic figure",
            "agreements": len(agree),
            "heuristics_right_when_judge_agrees": share(
                sum(h == t for h, _, t, _ in agree), len(agree)
            ),
            "disagreements": len(disagree),
            "review_flags_on_real_heuristic_errors": share(
                sum(h != t for h, _, t, _ in disagree), len(disagree)
            ),
            "heuristic_errors_flagged": share(
                sum(h[1] == h[2] for h in heuristic_errors), len(heuristic_errors)
            ),
        },
    }


if __name__ == "__main__":
    main()
