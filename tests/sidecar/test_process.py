"""The real ``cogumi sidecar`` process: configured by env and a YAML file,
memory flat under a 10 MiB download, and SIGTERM flushes buffered events."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

from tests.sidecar.servers import PROJECT_ID, TOKEN, Ingest, Origin, Served
from tests.sidecar.test_proxy_http import curl, free_port

COGUMI = str(Path(sys.executable).parent / "cogumi")


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def _wait_listening(port: int, proc: asyncio.subprocess.Process) -> None:
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


async def test_sigterm_flushes_buffered_events_and_exits_0(
    ingest: tuple[Ingest, Served], origin: tuple[Origin, Served], tmp_path: Path
) -> None:
    recorder, served = ingest
    port = free_port()
    config = tmp_path / "sidecar.yaml"
    # The API's URL with a trailing slash, as users often copy it: still shipped to /api/….
    config.write_text(f"listen: 127.0.0.1:{port}\nINGEST_URL: {served.url}/\nbatch_flush_ms: 5\n")
    env = {**os.environ, "SIDECAR_TOKEN": TOKEN, "PROJECT_ID": PROJECT_ID,
           "BATCH_FLUSH_MS": "600000", "BATCH_MAX_EVENTS": "1000", "HEARTBEAT_INTERVAL_SEC": "600"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        COGUMI, "sidecar", "--config", str(config),
        "--sink-domain", "attacker-sink.local",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await _wait_listening(port, proc)
        before = peak_rss_kib(proc.pid)
        size = 10 * 1024 * 1024
        code, _, err = await curl("-o", "/dev/null", "-x", f"http://127.0.0.1:{port}",
                                  f"{origin[1].url}/bytes/{size}")  # fmt: skip
        assert code == 0, err
        grown = peak_rss_kib(proc.pid) - before
        assert grown < 4 * 1024, f"peak RSS grew {grown} KiB for a 10 MiB download"
        async with httpx.AsyncClient(proxy=f"http://127.0.0.1:{port}", trust_env=False) as client:
            for i in range(4):
                await client.get(f"{origin[1].url}/p{i}")
        await asyncio.sleep(0.3)
        assert recorder.events == [], "env BATCH_FLUSH_MS (600 s) beats the file's 5 ms"
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output.decode()
    paths = [e["destination"]["path"] for e in recorder.events]
    assert paths == [f"/bytes/{size}"] + [f"/p{i}" for i in range(4)]
    assert recorder.events[0]["http"]["bytes_in"] == size
    assert recorder.heartbeats[-1]["counters"]["sent"] == 5
    assert TOKEN not in output.decode()


async def test_bad_option_exits_2_with_a_message() -> None:
    proc = await asyncio.create_subprocess_exec(
        COGUMI, "sidecar", "--batch-max-events", "zero",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "--batch-max-events" in err.decode()
