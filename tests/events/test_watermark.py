"""Server side of the sidecar watermark: stored per token, combined per project,
``run_active`` in ingest and heartbeat answers; and a real sidecar keeping it fresh."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from cogumi.events import service
from cogumi.events.models import SidecarStatus
from cogumi.projects.models import SidecarToken, TokenStatus
from cogumi.sidecar.options import SidecarOptions
from cogumi.sidecar.runner import Sidecar
from tests.events.test_ingest import batch, http_event, running_run
from tests.factories import Accounts, SidecarFixture, project_with_token
from tests.servers import serve_app


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def beat(sidecar: SidecarFixture) -> dict[str, Any]:
    response = await sidecar.client.post(
        f"/api/projects/{sidecar.project_id}/sidecar/heartbeat", json={"sidecar_version": "1"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def mark(sidecar: SidecarFixture, moment: datetime, events: int = 0) -> dict[str, Any]:
    body = batch(sidecar, [http_event(i) for i in range(events)])
    response = await sidecar.client.post(
        "/api/ingest/events", json=body | {"watermark": iso(moment)}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def project_watermark(accounts: Accounts, project_id: uuid.UUID) -> datetime | None:
    async with accounts.sessionmaker() as session:
        return await service.watermark_for_project(session, project_id=project_id)


async def test_watermark_is_the_earliest_of_live_sidecars(accounts: Accounts) -> None:
    owner = await accounts.signup()
    one = await project_with_token(accounts, owner.org_id)
    now = datetime.now(UTC).replace(microsecond=0)
    assert await project_watermark(accounts, one.project_id) is None
    answer = await mark(one, now - timedelta(seconds=10))
    assert answer == {"ok": True, "accepted": 0, "dropped": 0, "duplicate": False,
                      "run_active": False, "redacted": 0}  # fmt: skip
    # No heartbeat yet: not counted as live.
    assert await project_watermark(accounts, one.project_id) is None
    assert (await beat(one))["run_active"] is False
    assert await project_watermark(accounts, one.project_id) == now - timedelta(seconds=10)
    # An older (retried) batch never moves it back; a batch with events moves it on.
    await mark(one, now - timedelta(seconds=30))
    assert await project_watermark(accounts, one.project_id) == now - timedelta(seconds=10)
    assert (await mark(one, now - timedelta(seconds=5), events=2))["accepted"] == 2
    assert await project_watermark(accounts, one.project_id) == now - timedelta(seconds=5)
    # A second live sidecar of the project that lags holds the project's watermark back.
    two = await _second_token(accounts, one)
    await beat(two)
    await mark(two, now - timedelta(seconds=20))
    assert await project_watermark(accounts, one.project_id) == now - timedelta(seconds=20)
    # ...until it is revoked, or stops heartbeating.
    async with accounts.sessionmaker() as session, session.begin():
        await session.execute(
            update(SidecarToken)
            .where(SidecarToken.id == two.token_id)
            .values(status=TokenStatus.revoked)
        )
    assert await project_watermark(accounts, one.project_id) == now - timedelta(seconds=5)
    async with accounts.sessionmaker() as session, session.begin():
        await session.execute(
            update(SidecarStatus)
            .where(SidecarStatus.token_id == one.token_id)
            .values(last_heartbeat_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    assert await project_watermark(accounts, one.project_id) is None


async def test_watermark_from_the_future_is_cut_to_arrival(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    await beat(sidecar)
    before = datetime.now(UTC)
    await mark(sidecar, before + timedelta(hours=1))
    stored = await project_watermark(accounts, sidecar.project_id)
    assert stored is not None and before <= stored <= datetime.now(UTC)


async def test_run_active_in_answers(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    assert (await mark(sidecar, datetime.now(UTC)))["run_active"] is False
    await running_run(accounts, sidecar)
    assert (await beat(sidecar))["run_active"] is True
    assert (await mark(sidecar, datetime.now(UTC)))["run_active"] is True
    assert (await mark(sidecar, datetime.now(UTC), events=1))["run_active"] is True


async def test_bad_watermark_is_422(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    body = batch(sidecar, []) | {"watermark": "yesterday"}
    response = await sidecar.client.post("/api/ingest/events", json=body)
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "watermark"


async def test_real_sidecar_keeps_the_watermark_fresh_during_a_run(
    app: Any, accounts: Accounts
) -> None:
    owner = await accounts.signup()
    fixture = await project_with_token(accounts, owner.org_id)
    await running_run(accounts, fixture)
    async with serve_app(app) as api:
        options = SidecarOptions(listen="127.0.0.1:0", ingest_url=api, token=fixture.token,
                                 project_id=str(fixture.project_id), batch_flush_ms=50,
                                 heartbeat_interval=0.3)  # fmt: skip
        sidecar = Sidecar(options)
        await sidecar.start()
        try:
            first = await _until_watermark(accounts, fixture.project_id, None)
            later = await _until_watermark(accounts, fixture.project_id, first)
        finally:
            await sidecar.stop()
    assert sidecar.shipper.run_active is True
    assert later > first
    assert datetime.now(UTC) - later < timedelta(seconds=2)


async def _until_watermark(
    accounts: Accounts, project_id: uuid.UUID, past: datetime | None
) -> datetime:
    async with asyncio.timeout(10):
        while True:
            current = await project_watermark(accounts, project_id)
            if current is not None and (past is None or current > past + timedelta(seconds=0.5)):
                return current
            await asyncio.sleep(0.05)


async def _second_token(accounts: Accounts, first: SidecarFixture) -> SidecarFixture:
    from cogumi.tenancy import security

    issued = security.issue_prefixed_token("cgs")
    token_id = uuid.uuid4()
    async with accounts.sessionmaker() as session, session.begin():
        session.add(SidecarToken(id=token_id, org_id=first.org_id, project_id=first.project_id,
                                 prefix=issued.prefix, token_hash=issued.hash))  # fmt: skip
    client = accounts.new_client(headers={"X-Sidecar-Token": issued.plaintext})
    return SidecarFixture(first.project_id, first.org_id, issued.plaintext, token_id, client)
