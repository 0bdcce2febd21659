"""Invitations: create, list, revoke, preview, accept (signed in or not), SMTP delivery."""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.db.base import utcnow
from cogumi.tenancy import security
from cogumi.tenancy.models import AuditLog, Invitation, Membership, Role, User
from tests.factories import PASSWORD, Account, Accounts, unique_email
from tests.tenancy.conftest import AppFactory, audit_rows, client_for


async def invite(owner: Account, email: str, role: str = "MEMBER") -> dict[str, Any]:
    response = await owner.client.post("/api/invitations", json={"email": email, "role": role})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def token_of(body: dict[str, Any]) -> str:
    url: str = body["invite_url"]
    assert url.startswith("http://testserver/invite/")
    return url.rsplit("/", 1)[1]


async def test_invite_returns_link_once_and_stores_only_its_hash(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    email = unique_email("guest")
    body = await invite(owner, email.upper(), "VIEWER")
    assert body["delivery"] == "link" and body["email"] == email and body["role"] == "VIEWER"
    token = token_of(body)
    async with sessionmaker() as session:
        row = await session.get(Invitation, uuid.UUID(body["id"]))
    assert row is not None
    assert row.token_hash == security.sha256_hex(token)
    assert token not in repr(vars(row))
    assert timedelta(hours=71) < row.expires_at - row.created_at <= timedelta(hours=72)

    listed = await owner.client.get("/api/invitations")
    assert listed.status_code == 200
    assert [i["id"] for i in listed.json()] == [body["id"]]
    assert token not in listed.text and "invite_url" not in listed.text

    rows = await audit_rows(sessionmaker, owner.org_id, "member.invited")
    assert len(rows) == 1
    assert (rows[0].actor_user_id, rows[0].target_type, rows[0].target_id) == (
        owner.user_id,
        "invitation",
        body["id"],
    )
    assert rows[0].detail == {"email": email, "role": "VIEWER"}


async def test_preview_is_public(accounts: Accounts, client: httpx.AsyncClient) -> None:
    owner = await accounts.signup(org_name="Preview Org")
    email = unique_email("guest")
    token = token_of(await invite(owner, email, "ADMIN"))
    response = await client.get(f"/api/invitations/{token}")
    assert response.status_code == 200
    preview = response.json()
    assert (preview["org_name"], preview["email"], preview["role"]) == (
        "Preview Org",
        email,
        "ADMIN",
    )
    assert preview["expires_at"]
    missing = await client.get(f"/api/invitations/{security.random_token()}")
    assert missing.status_code == 404


async def test_anonymous_accept_creates_account_and_signs_in(
    accounts: Accounts, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup(org_name="Joinable")
    email = unique_email("guest")
    token = token_of(await invite(owner, email, "MEMBER"))
    response = await client.post(
        f"/api/invitations/{token}/accept",
        json={"password": PASSWORD, "display_name": "New Person"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["email"] == email and body["user"]["display_name"] == "New Person"
    assert body["current_org"] == {"id": str(owner.org_id), "name": "Joinable", "role": "MEMBER"}
    me = (await client.get("/api/me")).json()
    assert me["current_org"]["id"] == str(owner.org_id)
    assert (await client.get("/api/members")).status_code == 200
    # The new account can sign in with the chosen password.
    client.cookies.clear()
    login = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    assert login.json()["current_org"]["id"] == str(owner.org_id)

    joined = await audit_rows(sessionmaker, owner.org_id, "member.joined")
    assert len(joined) == 1
    assert joined[0].actor_user_id == uuid.UUID(body["user"]["id"])
    assert joined[0].target_id == body["user"]["id"]
    assert joined[0].detail["role"] == "MEMBER"

    # Single use: the link is gone now.
    client.cookies.clear()
    for again in (
        await client.get(f"/api/invitations/{token}"),
        await client.post(f"/api/invitations/{token}/accept", json={"password": PASSWORD}),
    ):
        assert again.status_code == 410
        assert again.json()["reason"] == "used"
    assert (await owner.client.get("/api/invitations")).json() == []


async def test_signed_in_user_accepts_and_switches(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup(org_name="Host Org")
    guest = await accounts.signup(email=unique_email("guest"))
    token = token_of(await invite(owner, guest.email, "ADMIN"))
    response = await guest.client.post(f"/api/invitations/{token}/accept")
    assert response.status_code == 200, response.text
    assert response.json()["current_org"] == {
        "id": str(owner.org_id),
        "name": "Host Org",
        "role": "ADMIN",
    }
    assert {o["id"] for o in response.json()["orgs"]} == {str(owner.org_id), str(guest.org_id)}
    assert (await guest.client.get("/api/audit")).status_code == 200  # ADMIN in Host Org now
    members = {m["email"]: m["role"] for m in (await owner.client.get("/api/members")).json()}
    assert members[guest.email] == "ADMIN"
    rows = await audit_rows(sessionmaker, owner.org_id, "member.joined")
    assert [r.actor_user_id for r in rows] == [guest.user_id]


async def test_signed_in_user_with_another_email_cannot_accept(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    other = await accounts.signup()
    body = await invite(owner, unique_email("guest"))
    response = await other.client.post(f"/api/invitations/{token_of(body)}/accept")
    assert response.status_code == 403
    async with sessionmaker() as session:
        row = await session.get(Invitation, uuid.UUID(body["id"]))
        member = await session.scalar(
            select(Membership).where(
                Membership.org_id == owner.org_id, Membership.user_id == other.user_id
            )
        )
    assert row is not None and row.accepted_at is None and member is None


async def test_already_a_member_is_409(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    team = await accounts.org_with_roles()
    owner = team[Role.OWNER]
    response = await owner.client.post(
        "/api/invitations", json={"email": team[Role.VIEWER].email, "role": "ADMIN"}
    )
    assert response.status_code == 409 and response.json()["field"] == "email"
    # Became a member between invitation and acceptance.
    guest = await accounts.signup(email=unique_email("guest"))
    body = await invite(owner, guest.email)
    async with sessionmaker() as session, session.begin():
        session.add(Membership(org_id=owner.org_id, user_id=guest.user_id, role=Role.VIEWER))
    accepted = await guest.client.post(f"/api/invitations/{token_of(body)}/accept")
    assert accepted.status_code == 409
    async with sessionmaker() as session:
        row = await session.get(Invitation, uuid.UUID(body["id"]))
    assert row is not None and row.accepted_at is None


async def test_second_pending_invitation_for_same_email_is_409(accounts: Accounts) -> None:
    owner = await accounts.signup()
    email = unique_email("guest")
    await invite(owner, email)
    again = await owner.client.post("/api/invitations", json={"email": email, "role": "VIEWER"})
    assert again.status_code == 409


async def test_expired_invitation_is_410(
    accounts: Accounts, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    body = await invite(owner, unique_email("guest"))
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Invitation)
            .where(Invitation.id == uuid.UUID(body["id"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    token = token_of(body)
    assert (await client.get(f"/api/invitations/{token}")).json()["reason"] == "expired"
    accepted = await client.post(f"/api/invitations/{token}/accept", json={"password": PASSWORD})
    assert accepted.status_code == 410
    assert (await owner.client.get("/api/invitations")).json() == []


async def test_revoke(
    accounts: Accounts, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    body = await invite(owner, unique_email("guest"))
    token = token_of(body)
    revoked = await owner.client.delete(f"/api/invitations/{body['id']}")
    assert revoked.status_code == 204
    preview = await client.get(f"/api/invitations/{token}")
    assert preview.status_code == 410 and preview.json()["reason"] == "revoked"
    accepted = await client.post(f"/api/invitations/{token}/accept", json={"password": PASSWORD})
    assert accepted.status_code == 410
    assert (await owner.client.delete(f"/api/invitations/{body['id']}")).status_code == 410
    rows = await audit_rows(sessionmaker, owner.org_id, "invitation.revoked")
    assert [(r.actor_user_id, r.target_id) for r in rows] == [(owner.user_id, body["id"])]


async def test_invitations_of_other_orgs_are_404(accounts: Accounts) -> None:
    owner = await accounts.signup()
    stranger = await accounts.signup()
    body = await invite(stranger, unique_email("guest"))
    assert (await owner.client.delete(f"/api/invitations/{body['id']}")).status_code == 404
    assert (await owner.client.get("/api/invitations")).json() == []


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MEMBER, Role.VIEWER])
async def test_only_owner_invites(accounts: Accounts, role: Role) -> None:
    team = await accounts.org_with_roles()
    body = await invite(team[Role.OWNER], unique_email("guest"))
    actor = team[role].client
    created = await actor.post("/api/invitations", json={"email": unique_email(), "role": "VIEWER"})
    assert created.status_code == 403
    assert (await actor.get("/api/invitations")).status_code == 403
    assert (await actor.delete(f"/api/invitations/{body['id']}")).status_code == 403


async def test_anonymous_accept_needs_password_and_writes_nothing(
    accounts: Accounts, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    email = unique_email("guest")
    body = await invite(owner, email)
    token = token_of(body)
    for payload in (None, {"display_name": "x"}, {"password": "short"}):
        response = await client.post(f"/api/invitations/{token}/accept", json=payload)
        assert response.status_code == 422, response.text
        assert response.json()["fields"][0]["field"] == "password"
    async with sessionmaker() as session:
        assert await session.scalar(select(User).where(User.email == email)) is None
        row = await session.get(Invitation, uuid.UUID(body["id"]))
    assert row is not None and row.accepted_at is None


async def test_anonymous_accept_for_existing_account_is_409(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    owner = await accounts.signup()
    existing = await accounts.signup()
    token = token_of(await invite(owner, existing.email))
    response = await client.post(f"/api/invitations/{token}/accept", json={"password": PASSWORD})
    assert response.status_code == 409
    assert response.json()["field"] == "email"
    # The invitation still works once they sign in.
    assert (await existing.client.post(f"/api/invitations/{token}/accept")).status_code == 200


async def test_api_key_cannot_accept(accounts: Accounts) -> None:
    owner = await accounts.signup()
    key = await accounts.api_key(owner.org_id, Role.OWNER)
    token = token_of(await invite(owner, unique_email()))
    assert (await key.client.post(f"/api/invitations/{token}/accept")).status_code == 403


async def test_concurrent_accepts_let_exactly_one_in(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    guest = await accounts.signup(email=unique_email("guest"))
    token = token_of(await invite(owner, guest.email))
    second = accounts.new_client()
    login = await second.post("/api/auth/login", json={"email": guest.email, "password": PASSWORD})
    second.headers["X-CSRF-Token"] = login.json()["csrf_token"]
    results = await asyncio.gather(
        guest.client.post(f"/api/invitations/{token}/accept"),
        second.post(f"/api/invitations/{token}/accept"),
    )
    codes = sorted(r.status_code for r in results)
    assert codes[0] == 200 and codes[1] in {409, 410}, [r.text for r in results]
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.org_id == owner.org_id, Membership.user_id == guest.user_id)
        )
    assert count == 1


# --- SMTP delivery, against a real SMTP server on loopback --------------------------------


@dataclass
class Inbox:
    """aiosmtpd handler that keeps every message it is given."""

    messages: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[int, Inbox]]:
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(inbox, hostname="localhost"), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, inbox
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def _signup_on(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A new OWNER signed in on ``app``."""
    async with client_for(app) as client:
        response = await client.post(
            "/api/auth/register",
            json={"email": unique_email("owner"), "password": PASSWORD, "org_name": "Mail Org"},
        )
        assert response.status_code == 201
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        yield client


async def test_invitation_is_mailed_and_not_returned(
    custom_app: AppFactory, smtp_server: tuple[int, Inbox]
) -> None:
    port, inbox = smtp_server
    settings = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False}
    async with custom_app(**settings) as app, _signup_on(app) as owner:
        email = unique_email("guest")
        response = await owner.post("/api/invitations", json={"email": email, "role": "VIEWER"})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["delivery"] == "email" and body["invite_url"] is None
        assert "/invite/" not in response.text
        assert len(inbox.messages) == 1
        envelope = inbox.messages[0]
        assert envelope.rcpt_tos == [email]
        assert isinstance(envelope.content, bytes)
        mail = message_from_bytes(envelope.content)
        assert mail["To"] == email and "Mail Org" in mail["Subject"]
        text = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
        link = next(word for word in text.split() if "/invite/" in word)
        assert link.startswith("http://testserver/invite/")
        preview = await owner.get(f"/api/invitations/{link.rsplit('/', 1)[1]}")
        assert preview.status_code == 200 and preview.json()["email"] == email


async def test_failed_mail_leaves_no_invitation(
    custom_app: AppFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings = {"smtp_host": "127.0.0.1", "smtp_port": closed_port, "smtp_starttls": False}
    async with custom_app(**settings) as app, _signup_on(app) as owner:
        email = unique_email("guest")
        response = await owner.post("/api/invitations", json={"email": email, "role": "VIEWER"})
        assert response.status_code == 502
        assert response.json()["error"] == "mail_not_sent"
    async with sessionmaker() as session:
        assert await session.scalar(select(Invitation).where(Invitation.email == email)) is None
        logged = await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                AuditLog.action == "member.invited", AuditLog.detail["email"].as_string() == email
            )
        )
    assert logged == 0


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_starttls_and_login_are_used_when_configured(
    custom_app: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server refuses mail before STARTTLS and AUTH; the invitation still arrives."""
    cert_path, key_path = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # the client trusts this cert only
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_path, key_path)
    logins: list[tuple[str, bytes]] = []

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        logins.append((data.login.decode(), data.password))
        return AuthResult(success=data.login == b"mailer" and data.password == b"s3cret")

    inbox = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            inbox,
            hostname="localhost",
            tls_context=server_tls,
            require_starttls=True,
            auth_required=True,
            authenticator=authenticator,
        ),
        "127.0.0.1",
        0,
    )
    settings = {
        "smtp_host": "127.0.0.1",
        "smtp_port": server.sockets[0].getsockname()[1],
        "smtp_starttls": True,
        "smtp_user": "mailer",
        "smtp_password": "s3cret",
    }
    try:
        async with custom_app(**settings) as app, _signup_on(app) as owner:
            email = unique_email("guest")
            response = await owner.post("/api/invitations", json={"email": email, "role": "VIEWER"})
            assert response.status_code == 201, response.text
    finally:
        server.close()
        await server.wait_closed()
    assert logins == [("mailer", b"s3cret")]
    assert [m.rcpt_tos for m in inbox.messages] == [[email]]
