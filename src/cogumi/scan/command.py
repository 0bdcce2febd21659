"""``cogumi scan``: parse, run the campaign (embedded or on a server), print, exit.

Exit codes are the CI contract: 0 clean, 1 a finding at or above
``--fail-on``, 2 a usage or connection error (or a run that did not complete).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cogumi.scan.options import ConnectionProblem, ScanOptions, UsageError, parse
from cogumi.scan.progress import Progress, for_stderr
from cogumi.scan.report import EXIT_ERROR, ScanResult, exit_code, render, summary_lines

log = logging.getLogger("cogumi.scan")


async def _campaign(options: ScanOptions, progress: Progress) -> ScanResult:
    # Imported here: a usage error should not wait for the web and database stack to load.
    from cogumi.scan import embedded, remote

    if options.remote:
        return await remote.run(options, progress)
    if options.data_dir:
        return await embedded.run(options, progress, Path(options.data_dir))
    with tempfile.TemporaryDirectory(prefix="cogumi-scan-") as tmp:
        return await embedded.run(options, progress, Path(tmp))


def _write(text: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    Path(out).write_text(text, encoding="utf-8")


def _fail(message: str) -> int:
    sys.stderr.write(f"cogumi scan: {message}\n")
    sys.stderr.flush()
    return EXIT_ERROR


def run_scan(options: ScanOptions, progress: Progress) -> int:
    """Run, write the report, report the verdict on stderr; returns the exit code."""
    try:
        result = asyncio.run(_campaign(options, progress))
    except UsageError as exc:
        return _fail(str(exc))
    except ConnectionProblem as exc:
        return _fail(str(exc))
    except Exception as exc:  # never let a crash read as "findings" (exit 1) in CI
        log.exception("the scan stopped on an unexpected error")
        return _fail(f"unexpected error ({type(exc).__name__}): {exc}")
    finally:
        progress.close()
    try:
        _write(render(result, options.format), options.out)
    except OSError as exc:
        return _fail(f"--out {options.out}: {exc.strerror or exc}")
    for line in summary_lines(result):
        progress.note(line)
    return exit_code(result, options.fail_on)


def main(argv: Sequence[str]) -> int:
    try:
        options = parse(argv, os.environ)
    except UsageError as exc:
        return _fail(str(exc))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return run_scan(options, for_stderr())
