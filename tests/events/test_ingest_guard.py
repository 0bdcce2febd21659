"""Ingest masks the raw secrets a sender left in its events (events/guard.py): on
both stores and both write paths, nothing raw reaches the database, the masks are
the sidecar's own labels, the new matches join the event's, and the answer says
how many were masked. A sidecar's own redacted events pass through unchanged."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select

from cogumi import __version__
from cogumi.db.base import Base
from cogumi.detect.credentials import credential_spans
from cogumi.detect.secrets import scan_all
from cogumi.events.guard import Guard
from cogumi.sidecar.core import Exchange, Policy, exchange_event
from tests.datasets import dataset
from tests.detect.test_redact import KEYS, NOSEY_PARKER, example_groups
from tests.events.test_fastparse import POLICY, sidecar_events
from tests.events.test_ingest import batch, http_event, stored
from tests.events.test_ingest_paths import _STORED, _body, _general, _raw
from tests.factories import Accounts, project_with_token

OLD = "0.0.9"  # a sidecar of another version: its detector is not the server's
OPENAI, AWS, GITHUB = KEYS[0], KEYS[1], KEYS[2]
LABEL = {
    OPENAI: "[REDACTED:OPENAI_KEY:sk-proj-…Vz]",
    AWS: "[REDACTED:AWS_ACCESS_KEY:AKIA…KJ]",
    GITHUB: "[REDACTED:GITHUB_TOKEN:ghp_…xL]",
}


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def leaky_event() -> dict[str, Any]:
    """An event whose sender's redaction missed a key in every place one can hide."""
    return http_event(
        1,
        destination={"host": "api.example.com", "path": f"/v1/keys/{GITHUB}/rotate", "port": 443,
                     "classification": "tool"},
        payload_redacted={
            "summary": "POST api.example.com/v1/keys",
            "headers_redacted": {"request": [["X-Debug", f"aws={AWS}"], ["Accept", "*/*"]]},
            "body_redacted_preview": f"config: {OPENAI}",
            "notes": {AWS: "a key as an object key", "n": [1, None, True]},
        },
        matches=[{"kind": "OPENAI_KEY", "hash": sha(OPENAI), "preview": OPENAI,
                  "confidence": 0.95}],
        error=f"upstream said: invalid key {OPENAI}",
    )  # fmt: skip


async def everything_stored(accounts: Accounts) -> str:
    """Every row of every table, as text."""
    async with accounts.sessionmaker() as session:
        rows = []
        for table in Base.metadata.sorted_tables:
            rows += [str(tuple(r)) for r in (await session.execute(select(table))).all()]
    return "\n".join(rows)


async def test_raw_secrets_from_another_sender_are_masked_before_they_are_stored(
    accounts: Accounts,
) -> None:
    owner = await accounts.signup()
    fast = await project_with_token(accounts, owner.org_id)
    general = await project_with_token(accounts, owner.org_id)
    leaky = leaky_event()
    body = batch(fast, [leaky]) | {"sidecar_version": OLD}
    response = await fast.client.post("/api/ingest/events", json=body)
    assert response.status_code == 200, response.text
    # Six in the clear: AWS twice in the payload, OpenAI in the body, the error and the
    # match preview, GitHub in the path.
    assert response.json()["redacted"] == 6
    result = await _general(accounts, general, _body(general, [leaky], sidecar_version=OLD))
    assert result.accepted == 1

    dump = await everything_stored(accounts)
    for key in KEYS[:3]:
        assert key not in dump and key[5:25] not in dump

    (event,) = await stored(accounts, fast.project_id)
    assert event.dest_path == f"/v1/keys/{LABEL[GITHUB]}/rotate"
    assert event.error == f"upstream said: invalid key {LABEL[OPENAI]}"
    assert event.payload_redacted == {
        "summary": "POST api.example.com/v1/keys",
        "headers_redacted": {"request": [["X-Debug", f"aws={LABEL[AWS]}"], ["Accept", "*/*"]]},
        "body_redacted_preview": f"config: {LABEL[OPENAI]}",
        "notes": {LABEL[AWS]: "a key as an object key", "n": [1, None, True]},
    }
    # The sender's match keeps its kind and hash, its preview masked; the two the
    # sender missed are added, once each, with the hash of the value.
    assert [(m["kind"], m["hash"], m["preview"]) for m in event.matches] == [
        ("OPENAI_KEY", sha(OPENAI), LABEL[OPENAI]),
        ("AWS_ACCESS_KEY", sha(AWS), "AKIA…KJ"),
        ("GITHUB_TOKEN", sha(GITHUB), "ghp_…xL"),
    ]
    # The integrity hash is that of the payload as stored (canonical JSON), masks included.
    canonical = json.dumps(event.payload_redacted, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)  # fmt: skip
    assert event.integrity_hash == hashlib.sha256(canonical.encode()).hexdigest()

    # Both write paths store the same row.
    rows = [await _raw(accounts, _STORED, project=s.project_id) for s in (fast, general)]
    assert [r[1:] for r in rows[0]] == [r[1:] for r in rows[1]]


async def test_the_answer_to_a_duplicate_batch_masks_nothing_more(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    body = batch(sidecar, [leaky_event()], batch_id="dup-1") | {"sidecar_version": OLD}
    first = await sidecar.client.post("/api/ingest/events", json=body)
    again = await sidecar.client.post("/api/ingest/events", json=body)
    assert (first.json()["redacted"], again.json()["redacted"]) == (6, 0)
    assert again.json()["duplicate"] is True
    assert len(await stored(accounts, sidecar.project_id)) == 1


def redacted_by_a_sidecar() -> list[dict[str, Any]]:
    """What a sidecar sends for bodies full of secrets: every Nosey Parker example,
    forty to a request body, plus the events of tests/events/test_fastparse.py."""
    lines = (dataset(NOSEY_PARKER) / "secret_examples.jsonl").read_text("utf-8").splitlines()
    examples = [json.loads(line)["text"] for line in lines]
    policy = Policy(rules=POLICY.rules, sensitive_paths=POLICY.sensitive_paths)
    events = sidecar_events()
    for start in range(0, len(examples), 40):
        ex = Exchange(method="POST", host="tools.example.com", port=443, path="/v1/upload",
                      request_headers=[("Content-Type", "text/plain")], status_code=200,
                      response_headers=[], ts=1_764_255_600.0, duration_ms=3.0)  # fmt: skip
        ex.request_body.add("\n".join(examples[start : start + 40]).encode()[:8000])
        events.append(exchange_event(ex, policy))
    return events


async def test_a_sidecars_redacted_events_pass_through_unchanged(accounts: Accounts) -> None:
    """Scanned again as another version's, a sidecar's own output gains no mask and
    no match: its labels and previews are not secrets to the detector."""
    owner = await accounts.signup()
    old = await project_with_token(accounts, owner.org_id)
    same = await project_with_token(accounts, owner.org_id)
    events = redacted_by_a_sidecar()
    assert sum(len(e["matches"]) for e in events) > 100, "bodies full of secrets"
    answers = []
    for sidecar, version in ((old, OLD), (same, __version__)):
        body = batch(sidecar, events) | {"sidecar_version": version}
        response = await sidecar.client.post("/api/ingest/events", json=body)
        assert response.status_code == 200, response.text
        answers.append(response.json()["redacted"])
    assert answers == [0, 0]
    rows = [await _raw(accounts, _STORED, project=s.project_id) for s in (old, same)]
    # Outside a run there is no seq to order by: compare them sorted.
    assert sorted(str(r[1:]) for r in rows[0]) == sorted(str(r[1:]) for r in rows[1])
    assert len(rows[0]) == len(events)


async def test_a_sidecar_of_the_servers_version_is_not_scanned_again(
    accounts: Accounts,
) -> None:
    """The trust boundary: the same version redacts with the same detector, so its
    batches are stored as sent (scanning them would double ingest's CPU for nothing)."""
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    event = http_event(1, payload_redacted={"body_redacted_preview": f"config: {OPENAI}"})
    body = batch(sidecar, [event]) | {"sidecar_version": __version__}
    response = await sidecar.client.post("/api/ingest/events", json=body)
    assert response.json()["redacted"] == 0
    (stored_event,) = await stored(accounts, sidecar.project_id)
    assert stored_event.matches == event["matches"]


def test_one_scan_of_all_an_events_strings_misses_nothing_a_scan_of_each_finds() -> None:
    """The guard looks at an event's strings one by one only when a scan of all of
    them joined finds something: that scan must not miss what a scan of one finds.
    Checked on every Nosey Parker example, each in groups with others and with
    ordinary text, and cut in two at random places."""
    checked = 0
    for group in example_groups():
        if any(scan_all(text) or credential_spans(text) for text in group):
            checked += 1
            payload = {"notes": group[:-1], group[-1]: 1}  # values and a key
            assert Guard().clean(payload, None, None, []) is not None, group
    assert checked > 500


def test_keys_masked_alike_keep_both_values() -> None:
    """Two object keys holding the same secret mask to the same label; neither value
    is lost."""
    payload = {f"a {OPENAI}": 1, f"a {OPENAI} ": 2, "a [REDACTED:OPENAI_KEY:sk-proj-…Vz]": 3}
    cleaned = Guard().clean(payload, None, None, [])
    assert cleaned is not None
    assert sorted(cleaned.payload.values()) == [1, 2, 3]
    assert OPENAI not in json.dumps(cleaned.payload)


async def test_a_credential_given_by_name_is_masked_and_counted_without_a_match(
    accounts: Accounts,
) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    event = http_event(
        1,
        payload_redacted={
            "body_redacted_preview": "machine db.internal login app password Tr0ub4dor\n",
            "response_body_redacted_preview": "Server=db;User Id=app;Password=Tr0ub4dor;",
        },
        matches=[],
    )
    body = batch(sidecar, [event]) | {"sidecar_version": OLD}
    response = await sidecar.client.post("/api/ingest/events", json=body)
    # The netrc line's password is a credential by name only (no match); the connection
    # string's is a PASSWORD match too, counted once, under its kind.
    assert response.json()["redacted"] == 2
    (stored_event,) = await stored(accounts, sidecar.project_id)
    assert stored_event.payload_redacted == {
        "body_redacted_preview": "machine db.internal login app password [REDACTED:CREDENTIAL]\n",
        "response_body_redacted_preview": "Server=db;User Id=app;Password=[REDACTED:PASSWORD:…];",
    }
    assert [m["kind"] for m in stored_event.matches] == ["PASSWORD"]
    assert "Tr0ub4dor" not in await everything_stored(accounts)
