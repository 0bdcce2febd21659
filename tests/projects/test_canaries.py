"""Canaries: minted once with a snippet, stored as hash + preview, recognised by hash."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text

from cogumi.detect.match import sha256_hex
from cogumi.detect.secrets import find_secrets
from cogumi.projects.canaries import canary_hashes
from cogumi.projects.models import Canary
from cogumi.tenancy.models import Role
from tests.factories import Accounts


async def test_mint_list_revoke(accounts: Accounts) -> None:
    owner = await accounts.signup()
    project = (
        await owner.client.post("/api/projects", json={"name": f"c-{uuid.uuid4().hex[:6]}"})
    ).json()
    minted = await owner.client.post(
        f"/api/projects/{project['id']}/canaries", json={"label": "sandbox env"}
    )
    assert minted.status_code == 201, minted.text
    body = minted.json()
    kinds = {item["kind"]: item for item in body["items"]}
    assert set(kinds) == {"OPENAI_KEY", "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "JWT"}
    for item in body["items"]:
        assert item["value"] in body["snippet"]["env"]
        assert item["value"] in body["snippet"]["json"]
        assert item["value"] not in item["preview"]
    # Every minted value is found by the detector, and its match hash is the stored hash.
    async with accounts.sessionmaker() as session:
        hashes = await canary_hashes(session, project_id=uuid.UUID(project["id"]))
        raw_rows = " ".join(
            str(r) for r in (await session.execute(text("SELECT * FROM canaries"))).all()
        )
    for item in body["items"]:
        assert item["value"] not in raw_rows
        (match,) = [
            m
            for m in find_secrets(f"leaked: {item['value']}")
            if m.hash == sha256_hex(item["value"])
        ]
        assert match.hash in hashes
    viewer = await accounts.member(owner.org_id, Role.VIEWER)
    listed = (await viewer.client.get(f"/api/projects/{project['id']}/canaries")).json()["items"]
    assert len(listed) == 4 and all("value" not in item for item in listed)
    assert (await viewer.client.post(f"/api/projects/{project['id']}/canaries")).status_code == 403
    gone = await owner.client.delete(f"/api/projects/{project['id']}/canaries/{kinds['JWT']['id']}")
    assert gone.status_code == 204
    listed = (await owner.client.get(f"/api/projects/{project['id']}/canaries")).json()["items"]
    assert {item["kind"] for item in listed} == {"OPENAI_KEY", "AWS_ACCESS_KEY", "AWS_SECRET_KEY"}
    async with accounts.sessionmaker() as session:
        # A revoked canary still proves a leak.
        assert len(await canary_hashes(session, project_id=uuid.UUID(project["id"]))) == 4
        rows = (
            await session.scalars(
                select(Canary).where(Canary.project_id == uuid.UUID(project["id"]))
            )
        ).all()
    assert {r.label for r in rows} == {"sandbox env"}
