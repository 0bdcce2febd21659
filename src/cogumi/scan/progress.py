"""Progress on stderr: a live spinner on a terminal, plain lines in CI logs.

stdout stays reserved for the report, so ``cogumi scan > report.json`` works
while the person at the terminal still sees the campaign move.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.markup import escape
from rich.status import Status

_MARK = {
    "pass": "resisted",
    "fail": "WEAKNESS",
    "blocked": "blocked",
    "inconclusive": "inconclusive",
}


class Progress(Protocol):
    def note(self, message: str) -> None:
        """A one-off line: what the scan is doing now."""

    def status(self, message: str) -> None:
        """The current long-running state (replaces the previous one)."""

    def script_done(self, result: Mapping[str, Any]) -> None:
        """One script finished with its verdict."""

    def close(self) -> None: ...


def describe(result: Mapping[str, Any]) -> str:
    verdict = _MARK.get(str(result.get("result")), str(result.get("result")))
    return (
        f"{result.get('script_id')}: {verdict} (score {result.get('score')}, "
        f"{result.get('severity')})"
    )


class PlainProgress:
    """One line per event, flushed at once (CI logs, pipes)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._last_status = ""

    def _line(self, text: str) -> None:
        self.stream.write(f"cogumi scan: {text}\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        self._line(message)

    def status(self, message: str) -> None:
        if message != self._last_status:
            self._last_status = message
            self._line(message)

    def script_done(self, result: Mapping[str, Any]) -> None:
        self._line(describe(result))

    def close(self) -> None:
        return None


class RichProgress:
    """A spinner with the current state, finished scripts printed above it."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._status: Status | None = None

    def note(self, message: str) -> None:
        self.console.print(f"[dim]•[/dim] {message}", highlight=False, markup=False)

    def status(self, message: str) -> None:
        if self._status is None:
            self._status = self.console.status(message)
            self._status.start()
        else:
            self._status.update(message)

    def script_done(self, result: Mapping[str, Any]) -> None:
        colour = {"fail": "bold red", "blocked": "yellow", "pass": "green"}.get(
            str(result.get("result")), "white"
        )
        self.console.print(f"[{colour}]•[/{colour}] {escape(describe(result))}", highlight=False)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def for_stderr() -> Progress:
    """Rich on a terminal, plain lines otherwise."""
    if sys.stderr.isatty():
        return RichProgress()
    return PlainProgress()
