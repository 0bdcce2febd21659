"""Deliveries reach a real receiver on loopback, signed; failures are retried and logged."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
import uuid

from fastapi import FastAPI
from sqlalchemy import select, update

from cogumi.db.engine import transaction
from cogumi.findings import service as findings_service
from cogumi.runs.models import Run, RunStatus, Severity
from cogumi.webhooks import signing
from cogumi.webhooks.models import Webhook, WebhookDelivery
from tests.factories import Accounts
from tests.webhooks.conftest import (
    Receiver,
    add_finding,
    finish,
    hook_body,
    new_run,
    wait_final,
)


def check_signature(secret: str, header: str, body: bytes) -> None:
    """Recompute the signature the way a receiver would, independently of the product code."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    assert abs(time.time() - int(fields["t"])) < 60
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(fields["v1"], expected.hexdigest())
    assert signing.verify(secret, header, body)
    assert not signing.verify(secret, header, body + b" ")
    assert not signing.verify("whsec_wrong", header, body)


async def test_signed_deliveries_for_runs_and_findings(
    app: FastAPI, accounts: Accounts, receiver: Receiver
) -> None:
    owner = await accounts.signup()
    created = await owner.client.post(
        "/api/webhooks", json=hook_body(f"{receiver.url}/cogumi", min_severity="high")
    )
    assert created.status_code == 201, created.text
    hook = created.json()
    secret = hook["secret"]
    assert secret.startswith("whsec_") and hook["secret_prefix"] == secret[:10]

    run = await new_run(app, owner.org_id)
    await add_finding(app, run, severity=Severity.low, title="below the filter")
    finding_id = await add_finding(app, run, severity=Severity.critical)
    await finish(app, run, RunStatus.completed, risk_score=91)

    got = await receiver.wait_for(2)
    items = await wait_final(owner.client, hook["id"], 2)
    assert len(got) == 2 and len(items) == 2
    by_type = {}
    for request in got:
        assert request.path == "/cogumi"
        assert request.headers["content-type"] == "application/json"
        check_signature(secret, request.headers["x-cogumi-signature"], request.body)
        doc = json.loads(request.body)
        assert request.headers["x-cogumi-event"] == doc["type"]
        assert request.headers["x-cogumi-event-id"] == doc["id"]
        assert doc["org_id"] == str(owner.org_id)
        assert doc["data"]["url"] == f"http://testserver/runs/{run.id}"
        by_type[doc["type"]] = doc
    finding = by_type["finding.created"]["data"]["finding"]
    assert finding["id"] == str(finding_id) and finding["severity"] == "critical"
    completed = by_type["run.completed"]["data"]["run"]
    assert completed == {**completed, "id": str(run.id), "status": "completed", "risk_score": 91}
    assert all(i["status"] == "delivered" and i["attempts"] == 1 for i in items)
    assert {i["id"] for i in items} == {r.headers["x-cogumi-delivery"] for r in got}


async def test_failed_and_stopped_runs_send_run_failed_and_cancel_sends_nothing(
    app: FastAPI, accounts: Accounts, receiver: Receiver
) -> None:
    owner = await accounts.signup()
    body = hook_body(receiver.url, events=["run.failed"])
    hook = (await owner.client.post("/api/webhooks", json=body)).json()
    for status in (
        RunStatus.canceled,
        RunStatus.completed,
        RunStatus.failed,
        RunStatus.stopped_quota,
    ):
        await finish(app, await new_run(app, owner.org_id), status, reason="agent unreachable")
    await receiver.wait_for(2)
    items = await wait_final(owner.client, hook["id"], 2)
    statuses = sorted(json.loads(r.body)["data"]["run"]["status"] for r in receiver.got)
    assert statuses == ["failed", "stopped_quota"]
    assert {i["event_type"] for i in items} == {"run.failed"} and len(items) == 2


async def test_receiver_errors_are_retried_then_logged_as_failed(
    fast_app: FastAPI, fast_accounts: Accounts, receiver: Receiver
) -> None:
    owner = await fast_accounts.signup()
    hook = (await owner.client.post("/api/webhooks", json=hook_body(receiver.url))).json()
    receiver.codes = [500, 500, 500]
    await finish(fast_app, await new_run(fast_app, owner.org_id), RunStatus.completed)
    [item] = await wait_final(owner.client, hook["id"], 1)
    assert item["status"] == "failed" and item["attempts"] == 3 == item["max_attempts"]
    assert [a["status_code"] for a in item["attempt_log"]] == [500, 500, 500]
    assert item["last_error"] == "HTTP 500"
    assert len(receiver.got) == 3
    # The same event each time (receivers deduplicate on it), signed afresh.
    assert len({r.headers["x-cogumi-event-id"] for r in receiver.got}) == 1


async def test_a_retry_can_succeed(
    fast_app: FastAPI, fast_accounts: Accounts, receiver: Receiver
) -> None:
    owner = await fast_accounts.signup()
    hook = (await owner.client.post("/api/webhooks", json=hook_body(receiver.url))).json()
    receiver.codes = [503]
    await finish(fast_app, await new_run(fast_app, owner.org_id), RunStatus.completed)
    [item] = await wait_final(owner.client, hook["id"], 1)
    assert item["status"] == "delivered" and item["attempts"] == 2
    assert [a["status_code"] for a in item["attempt_log"]] == [503, 204]


async def test_redirects_are_not_followed(
    fast_app: FastAPI, fast_accounts: Accounts, receiver: Receiver
) -> None:
    owner = await fast_accounts.signup()
    hook = (await owner.client.post("/api/webhooks", json=hook_body(receiver.url))).json()
    receiver.codes = [302, 307, 302]
    await finish(fast_app, await new_run(fast_app, owner.org_id), RunStatus.completed)
    [item] = await wait_final(owner.client, hook["id"], 1)
    assert item["status"] == "failed"
    assert "redirects are not followed" in item["last_error"]
    assert [r.path for r in receiver.got] == ["/", "/", "/"]  # never /redirected


async def test_guard_runs_again_at_delivery(
    fast_app: FastAPI, fast_accounts: Accounts, receiver: Receiver
) -> None:
    """A URL that became forbidden after creation (here: edited in the database) is not called."""
    owner = await fast_accounts.signup()
    hook = (await owner.client.post("/api/webhooks", json=hook_body(receiver.url))).json()
    async with transaction(fast_app.state.sessionmaker) as session:
        await session.execute(
            update(Webhook)
            .where(Webhook.id == uuid.UUID(hook["id"]))
            .values(url="http://169.254.169.254/x")
        )
    await finish(fast_app, await new_run(fast_app, owner.org_id), RunStatus.completed)
    [item] = await wait_final(owner.client, hook["id"], 1)
    assert item["status"] == "failed"
    assert "blocked by the URL guard" in item["last_error"]
    assert "metadata" in item["last_error"]
    assert receiver.got == []


async def test_slack_format(app: FastAPI, accounts: Accounts, receiver: Receiver) -> None:
    owner = await accounts.signup()
    body = hook_body(receiver.url, format="slack", events=["finding.created"])
    hook = (await owner.client.post("/api/webhooks", json=body)).json()
    run = await new_run(app, owner.org_id, name="support-bot")
    await add_finding(app, run, severity=Severity.high, title="Leak <script>&</script>")
    [request] = await receiver.wait_for(1)
    await wait_final(owner.client, hook["id"], 1)
    message = json.loads(request.body)
    assert list(message) == ["text"]
    text = message["text"]
    assert "*HIGH*" in text and "support-bot" in text
    assert "Leak &lt;script&gt;&amp;&lt;/script&gt;" in text
    assert f"<http://testserver/runs/{run.id}|open the run>" in text
    check_signature(hook["secret"], request.headers["x-cogumi-signature"], request.body)


async def test_disabled_webhook_gets_nothing(
    app: FastAPI, accounts: Accounts, receiver: Receiver
) -> None:
    owner = await accounts.signup()
    hook = (
        await owner.client.post("/api/webhooks", json=hook_body(receiver.url, enabled=False))
    ).json()
    await finish(app, await new_run(app, owner.org_id), RunStatus.completed)
    async with app.state.sessionmaker() as session:
        rows = (await session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.webhook_id == uuid.UUID(hook["id"]))
        )).all()  # fmt: skip
    assert rows == [] and receiver.got == []


async def test_rolled_back_change_sends_nothing(
    app: FastAPI, accounts: Accounts, receiver: Receiver
) -> None:
    owner = await accounts.signup()
    hook = (await owner.client.post("/api/webhooks", json=hook_body(receiver.url))).json()
    run = await new_run(app, owner.org_id)
    with contextlib.suppress(RuntimeError):
        async with transaction(app.state.sessionmaker) as session:
            row = await session.get(Run, run.id)
            assert row is not None
            await findings_service.record_finding(
                session, bus=app.state.live_bus, run=row, script_id="S1", technique_id="T",
                category="secret_leakage", title="t", severity="high", status="confirmed",
                score=90, confidence=1.0, summary="",
            )  # fmt: skip
            raise RuntimeError("the change fails after the finding was added")
    await finish(app, run, RunStatus.completed)
    await wait_final(owner.client, hook["id"], 1)
    assert [json.loads(r.body)["type"] for r in receiver.got] == ["run.completed"]
