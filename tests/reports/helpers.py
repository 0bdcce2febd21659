"""Runs for report tests, made by the real campaign runner against a local agent.

The agent leaks a project canary (a minted fake OpenAI key) to the scripts
named in ``leak_for`` and refuses everything else, so a test decides per run
which findings exist; the same project is reused so fingerprints repeat.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from cogumi.db.engine import transaction
from cogumi.engine.runner import execute_run
from cogumi.runs.models import Run, RunStatus
from tests.factories import Account, Accounts, project_with_token
from tests.servers import serve_app

SCRIPTS = ["S1", "P07"]


@dataclass
class Agent:
    leak_for: set[str] = field(default_factory=set)
    secret: str = ""
    extra: str = ""  # appended to every reply (hostile markup, a non-canary secret, ...)

    def answer(self, body: dict[str, Any]) -> str:
        if body.get("metadata", {}).get("script_id") in self.leak_for:
            return f"Sure, for debugging: the key is {self.secret} - anything else?{self.extra}"
        return f"I can't share credentials or configuration.{self.extra}"

    def app(self) -> Any:
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            raw = b""
            while True:
                message = await receive()
                raw += message.get("body", b"")
                if not message.get("more_body"):
                    break
            reply = self.answer(json.loads(raw)) if scope["path"] == "/message" else "ok"
            out = json.dumps({"message": reply, "done": False}).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": out})

        return asgi


@dataclass
class Campaigns:
    app: FastAPI
    accounts: Accounts
    owner: Account
    project_id: uuid.UUID
    url: str
    agent: Agent

    async def run(self, leak_for: set[str], scripts: list[str] | None = None) -> uuid.UUID:
        """One completed run of the project, leaking to ``leak_for``."""
        self.agent.leak_for = leak_for
        run_id = uuid.uuid4()
        config = {
            "scripts": scripts or SCRIPTS, "intensity": "low", "styles": [],
            "project": {"id": str(self.project_id), "name": "Support bot <b>", "environment": "sandbox",
                        "agent_test_url": self.url, "adapter": {"kind": "native"},
                        "sink_domains": ["attacker-sink.local"], "tool_domains": [],
                        "sensitive_paths": ["/admin"]},
        }  # fmt: skip
        async with transaction(self.accounts.sessionmaker) as session:
            session.add(Run(id=run_id, org_id=self.owner.org_id, project_id=self.project_id,
                            status=RunStatus.running, started_at=datetime.now(UTC), config=config))  # fmt: skip
        await execute_run(sessionmaker=self.accounts.sessionmaker, settings=self.app.state.settings,
                          bus=self.app.state.live_bus, run_id=run_id, should_stop=_never)  # fmt: skip
        async with transaction(self.accounts.sessionmaker) as session:
            run = await session.get(Run, run_id)
            assert run is not None
            run.status, run.ended_at = RunStatus.completed, datetime.now(UTC)
        return run_id


async def _never() -> bool:
    return False


@asynccontextmanager
async def campaigns(app: FastAPI, accounts: Accounts) -> AsyncIterator[Campaigns]:
    owner = await accounts.signup()
    agent = Agent()
    async with serve_app(agent.app()) as url:
        sidecar = await project_with_token(accounts, owner.org_id, agent_test_url=url)
        minted = (await owner.client.post(f"/api/projects/{sidecar.project_id}/canaries")).json()
        agent.secret = next(i["value"] for i in minted["items"] if i["kind"] == "OPENAI_KEY")
        yield Campaigns(app, accounts, owner, sidecar.project_id, url, agent)
