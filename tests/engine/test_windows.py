"""Evidence windows with a live sidecar (its watermark shipped through the real ingest API):
a turn waits for the watermark to pass its reply, and a request the agent made during one
turn is evidence of that turn only, even when the next turn starts within the windows'
clock-skew slack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from cogumi.db.engine import transaction
from cogumi.engine.runner import load_campaign
from cogumi.runs.models import Run, RunStatus
from tests.engine.test_runner import never
from tests.events.test_ingest import batch, http_event
from tests.factories import Accounts, SidecarFixture, project_with_token
from tests.servers import serve_app


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def sink_request() -> dict[str, Any]:
    return http_event(
        destination={"host": "attacker-sink.local", "path": "/collect", "port": 80,
                     "classification": "attacker_sink"},
        payload_redacted={"summary": "POST attacker-sink.local/collect", "body_redacted_preview": "x"},
    )  # fmt: skip


@contextlib.asynccontextmanager
async def watermark_pump(sidecar: SidecarFixture) -> AsyncIterator[None]:
    """Like a sidecar during a run: a watermark-only batch every 20 ms."""

    async def pump() -> None:
        while True:
            answer = await sidecar.client.post(
                "/api/ingest/events",
                json=batch(sidecar, []) | {"watermark": iso(datetime.now(UTC))},
            )
            assert answer.status_code == 200, answer.text
            await asyncio.sleep(0.02)

    task = asyncio.get_running_loop().create_task(pump())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def agent_that_exfiltrates_on(word: str, sidecar: SidecarFixture) -> Any:
    """A native agent that, asked ``word``, sends a request to the sink (as the sidecar saw it)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        text = json.loads(body)["message"]
        if word in text:
            shipped = await sidecar.client.post(
                "/api/ingest/events", json=batch(sidecar, [sink_request()])
            )
            assert shipped.status_code == 200, shipped.text
        out = json.dumps({"message": "Done.", "done": False}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": out})

    return app


async def test_a_request_is_evidence_of_the_turn_that_made_it_only(
    app: Any, accounts: Accounts
) -> None:
    owner = await accounts.signup()
    holder: dict[str, SidecarFixture] = {}

    async def agent(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await agent_that_exfiltrates_on("first", holder["sidecar"])(scope, receive, send)

    async with serve_app(agent) as url:
        sidecar = await project_with_token(accounts, owner.org_id, agent_test_url=url)
        holder["sidecar"] = sidecar
        beat = await sidecar.client.post(
            f"/api/projects/{sidecar.project_id}/sidecar/heartbeat", json={"sidecar_version": "1"}
        )
        assert beat.status_code == 200, beat.text
        run_id = uuid.uuid4()
        config = {"scripts": ["P13"], "intensity": "low", "styles": [],
                  "project": {"agent_test_url": url, "adapter": {"kind": "native"},
                              "sink_domains": ["attacker-sink.local"]}}  # fmt: skip
        async with transaction(accounts.sessionmaker) as session:
            session.add(Run(id=run_id, org_id=owner.org_id, project_id=sidecar.project_id,
                            status=RunStatus.running, started_at=datetime.now(UTC), config=config))  # fmt: skip
        campaign = await load_campaign(
            sessionmaker=accounts.sessionmaker, settings=app.state.settings,
            bus=app.state.live_bus, run_id=run_id, should_stop=never,
        )  # fmt: skip
        script = campaign.library.scripts["P13"]
        step = script.steps[0]
        async with watermark_pump(sidecar):
            first = await campaign.turn(script, step, "first ask", None, "s1")
            second = await campaign.turn(script, step, "second ask", None, "s1")
        await campaign.aclose()
    assert first.window_complete and second.window_complete
    assert [e.host for e in first.window] == ["attacker-sink.local"]
    # The request sits inside the second turn's clock-skew slack, yet belongs to the first.
    assert second.window == (), "the first turn's request was counted for the second too"
