"""Conversation state: short-term history per session, long-term memory on disk.

Long-term memory is what a poisoning attack writes to. It is scoped by
``run_id`` by default so every campaign starts from a clean agent (a second run
against the same process would otherwise find it already poisoned and lose the
before/after contrast); ``--memory-scope global`` shares one memory across runs.
The file is rewritten atomically, so a crash never leaves half a JSON document.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("cogumi.demo_agent")

MAX_SESSIONS = 1000
MAX_HISTORY = 50
MAX_RULES = 100
GLOBAL_SCOPE = "*"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One real HTTP call the agent made (no bodies: they may hold the secret)."""

    tool: str
    method: str
    url: str
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 400

    def public(self) -> dict[str, Any]:
        return {"tool": self.tool, "method": self.method, "url": self.url.split("?", 1)[0],
                "status": self.status, "error": self.error}  # fmt: skip


@dataclass
class Session:
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text)
    last_calls: list[ToolCall] = field(default_factory=list)
    turns: int = 0

    def add(self, role: str, text: str) -> None:
        self.history.append((role, text))
        del self.history[:-MAX_HISTORY]


class Sessions:
    """Per-``session_id`` conversations, least recently used dropped past a bound."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._limit = limit

    def get(self, session_id: str) -> Session:
        session = self._items.pop(session_id, None) or Session()
        self._items[session_id] = session
        while len(self._items) > self._limit:
            self._items.popitem(last=False)
        return session


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    trusts_authority: bool
    session_id: str
    saved_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "trusts_authority": self.trusts_authority,
                "session_id": self.session_id, "saved_at": self.saved_at}  # fmt: skip


class LongTermMemory:
    """Standing rules the agent was told to remember, optionally kept in a JSON file."""

    def __init__(self, path: str | None, scope_mode: str = "run") -> None:
        self.path = Path(path) if path else None
        self.scope_mode = scope_mode
        self._scopes: dict[str, list[Rule]] = {}
        self._lock = threading.Lock()
        if self.path and self.path.exists():
            self._scopes = self._load(self.path)

    def scope(self, run_id: str | None) -> str:
        return run_id if self.scope_mode == "run" and run_id else GLOBAL_SCOPE

    def rules(self, run_id: str | None) -> list[Rule]:
        return list(self._scopes.get(self.scope(run_id), ()))

    def trusts_authority(self, run_id: str | None) -> bool:
        return any(rule.trusts_authority for rule in self.rules(run_id))

    def remember(
        self, run_id: str | None, *, text: str, trusts_authority: bool, session_id: str
    ) -> Rule:
        rule = Rule(text[:500], trusts_authority, session_id, datetime.now(UTC).isoformat())
        with self._lock:
            rules = self._scopes.setdefault(self.scope(run_id), [])
            rules.append(rule)
            del rules[:-MAX_RULES]
            self._save()
        return rule

    def _save(self) -> None:
        if self.path is None:
            return
        data = {
            "version": 1,
            "scopes": {k: [r.to_dict() for r in v] for k, v in self._scopes.items()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".memory-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _load(path: Path) -> dict[str, list[Rule]]:
        """A damaged file is reported and ignored (the agent starts with empty memory)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return {
                str(scope): [
                    Rule(
                        str(r["text"]),
                        bool(r["trusts_authority"]),
                        str(r["session_id"]),
                        str(r["saved_at"]),
                    )
                    for r in rules
                ]
                for scope, rules in data["scopes"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("memory file %s unreadable (%s); starting with empty memory", path, exc)
            return {}
