"""HTTPS through CONNECT: tunnelled untouched (the client verifies the origin's
own certificate end to end), recorded as host:port, bytes each way, duration."""

from __future__ import annotations

import hashlib
import ssl

import httpx

from tests.sidecar.conftest import SidecarFactory, proxy_url
from tests.sidecar.servers import Ingest, Origin, Served
from tests.sidecar.test_proxy_http import curl, free_port


async def test_httpx_over_connect_to_a_local_tls_server(
    make_sidecar: SidecarFactory,
    ingest: tuple[Ingest, Served],
    tls_origin: tuple[Origin, Served],
    tls_files: tuple[str, str],
) -> None:
    recorder, _ = ingest
    port = tls_origin[1].port
    trust = ssl.create_default_context(cafile=tls_files[0])
    size = 2 * 1024 * 1024
    async with make_sidecar() as sidecar:
        async with httpx.AsyncClient(proxy=proxy_url(sidecar), verify=trust, trust_env=False) as c:
            response = await c.get(f"https://localhost:{port}/bytes/{size}")
        [event] = await recorder.wait_events(1)
    block = bytes(range(256)) * 256
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(block * 32).digest()
    assert event["type"] == "request"
    assert event["destination"]["host"] == "localhost"
    assert event["destination"]["port"] == port
    assert event["destination"]["path"] == ""
    assert event["destination"]["classification"] == "internal_api"
    http = event["http"]
    assert (http["method"], http["status_code"]) == ("CONNECT", 200)
    assert size < http["bytes_in"] < size * 1.05, "TLS records add only a little"
    assert 200 < http["bytes_out"] < 5000, "handshake + one encrypted request"
    assert http["duration_ms"] > 0
    assert event["payload_redacted"]["summary"].startswith(f"CONNECT localhost:{port} tunnel")
    assert event["payload_redacted"]["body_redacted_preview"] == ""


async def test_curl_over_connect(
    make_sidecar: SidecarFactory,
    ingest: tuple[Ingest, Served],
    tls_origin: tuple[Origin, Served],
    tls_files: tuple[str, str],
) -> None:
    recorder, _ = ingest
    url = f"https://127.0.0.1:{tls_origin[1].port}/ping"
    async with make_sidecar() as sidecar:
        code, out, err = await curl("--cacert", tls_files[0], "-x", proxy_url(sidecar), url)
        [event] = await recorder.wait_events(1)
    assert code == 0, err
    assert out == '{"path": "/ping", "method": "GET"}'
    assert event["http"]["method"] == "CONNECT"
    assert event["destination"]["host"] == "127.0.0.1"


async def test_connect_to_a_sink_is_refused_and_recorded_blocked(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    async with make_sidecar(sink_domains=("exfil.example",)) as sidecar:
        code, _, err = await curl("-x", proxy_url(sidecar), "https://upload.exfil.example/x")
        [event] = await recorder.wait_events(1)
    assert code != 0 and "403" in err
    assert event["type"] == "blocked"
    assert event["destination"]["classification"] == "attacker_sink"
    assert event["destination"]["port"] == 443
    assert event["http"]["status_code"] == 403
    assert event["error"] == "sink_domain"


async def test_connect_to_a_closed_port_gives_502(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    async with make_sidecar() as sidecar:
        code, _, err = await curl("-x", proxy_url(sidecar), f"https://127.0.0.1:{free_port()}/")
        [event] = await recorder.wait_events(1)
    assert code != 0 and "502" in err
    assert event["http"]["status_code"] == 502
    assert event["error"] == "upstream_refused"
