"""Factories of signed-in users, orgs, role members and API-key clients.

Everything is created with unique emails and names, so tests share one
database without seeing each other's rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.tenancy import security
from cogumi.tenancy.models import ApiKey, Membership, Role, User

PASSWORD = "correct horse battery staple"


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class Account:
    """A signed-in (or API-key) client acting in ``org_id``."""

    client: httpx.AsyncClient
    org_id: uuid.UUID
    user_id: uuid.UUID | None
    email: str
    role: Role


@dataclass
class Accounts:
    app: FastAPI
    sessionmaker: async_sessionmaker[AsyncSession]
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def new_client(self, **kwargs: object) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://testserver",
            **kwargs,  # type: ignore[arg-type]
        )
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()

    async def signup(self, email: str | None = None, org_name: str | None = None) -> Account:
        """Register through the API: a new user who OWNs a new org, signed in."""
        client = self.new_client()
        email = email or unique_email("owner")
        body: dict[str, str] = {"email": email, "password": PASSWORD}
        if org_name:
            body["org_name"] = org_name
        response = await client.post("/api/auth/register", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        client.headers["X-CSRF-Token"] = data["csrf_token"]
        return Account(
            client=client,
            org_id=uuid.UUID(data["current_org"]["id"]),
            user_id=uuid.UUID(data["user"]["id"]),
            email=email,
            role=Role.OWNER,
        )

    async def member(self, org_id: uuid.UUID, role: Role) -> Account:
        """A new user with ``role`` in ``org_id`` (inserted directly), signed in via the API."""
        email = unique_email(role.value.lower())
        async with self.sessionmaker() as session, session.begin():
            user = User(
                id=uuid.uuid4(), email=email, password_hash=security.hash_password(PASSWORD)
            )
            session.add(user)
            await session.flush()
            session.add(Membership(org_id=org_id, user_id=user.id, role=role))
        client = self.new_client()
        response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        return Account(client=client, org_id=org_id, user_id=user.id, email=email, role=role)

    async def api_key(self, org_id: uuid.UUID, role: Role) -> Account:
        """A client that authenticates with a fresh org API key of ``role``."""
        issued = security.issue_prefixed_token("cgk")
        async with self.sessionmaker() as session, session.begin():
            session.add(
                ApiKey(
                    org_id=org_id,
                    name=f"test-{role.value}",
                    prefix=issued.prefix,
                    key_hash=issued.hash,
                    role=role,
                )
            )
        client = self.new_client(headers={"Authorization": f"Bearer {issued.plaintext}"})
        return Account(client=client, org_id=org_id, user_id=None, email="", role=role)

    async def org_with_roles(self) -> dict[Role, Account]:
        """One org with a signed-in OWNER, ADMIN, MEMBER and VIEWER."""
        owner = await self.signup()
        accounts = {Role.OWNER: owner}
        for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
            accounts[role] = await self.member(owner.org_id, role)
        return accounts


@dataclass
class SidecarFixture:
    project_id: uuid.UUID
    org_id: uuid.UUID
    token: str
    token_id: uuid.UUID
    client: httpx.AsyncClient  # sends X-Sidecar-Token


async def project_with_token(
    accounts: Accounts, org_id: uuid.UUID, **project_fields: object
) -> SidecarFixture:
    """A project in ``org_id`` with one active sidecar token (rows inserted directly)."""
    from cogumi.projects.models import Project, SidecarToken

    issued = security.issue_prefixed_token("cgs")
    project_id, token_id = uuid.uuid4(), uuid.uuid4()
    async with accounts.sessionmaker() as session, session.begin():
        session.add(
            Project(
                id=project_id, org_id=org_id, name=f"project-{project_id.hex[:8]}", **project_fields
            )
        )
        await session.flush()
        session.add(
            SidecarToken(
                id=token_id,
                org_id=org_id,
                project_id=project_id,
                prefix=issued.prefix,
                token_hash=issued.hash,
            )
        )
    client = accounts.new_client(headers={"X-Sidecar-Token": issued.plaintext})
    return SidecarFixture(
        project_id=project_id,
        org_id=org_id,
        token=issued.plaintext,
        token_id=token_id,
        client=client,
    )
