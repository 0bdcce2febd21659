"""The app served from a network namespace of its own: it answers on the
machine's loopback, but no connection it opens itself (agent endpoints,
webhooks, DNS) can leave the namespace.

A fuzzer fills URL fields with whatever it likes (public addresses included)
and then asks the server to call them. Inside ``unshare --net`` the server
has no route anywhere, so those calls fail at once with "network
unreachable", exactly as they would in a sandbox without egress, and no
packet leaves this machine. The listening socket is made here, in the
machine's own namespace, and handed to the server as an inherited file
descriptor, so clients reach it on 127.0.0.1 as usual. The database is
reached through a filesystem socket (PostgreSQL's Unix socket) or file
(SQLite), which a network namespace does not fence.

With ``agent=True`` the namespace's own loopback is brought up and a
vulnerable ``cogumi demo-agent`` listens on it (:data:`AGENT_URL`), so real
campaigns can run; that loopback is the namespace's, not the machine's.

Run inside the namespace as ``python -m tests.reliability.fenced_server --fd N``;
the settings come from the ``COGUMI_*`` environment, and the database is
migrated first, as ``cogumi serve`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
AGENT_PORT = 8700
AGENT_URL = f"http://127.0.0.1:{AGENT_PORT}"
COGUMI = str(Path(sys.executable).parent / "cogumi")


def loopback_up() -> None:
    """``ip link set lo up``, without needing iproute2: SIOCGIFFLAGS/SIOCSIFFLAGS on lo."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14s", b"lo", 0, bytes(14))
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, siocgifflags, request))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, bytes(14)))


def start_agent() -> subprocess.Popen[bytes]:
    agent = subprocess.Popen(
        [COGUMI, "demo-agent", "--listen", f"127.0.0.1:{AGENT_PORT}", "--log-level", "warning"]
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", AGENT_PORT), timeout=1).close()
            return agent
        except OSError:
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the demo agent did not start") from None
            time.sleep(0.1)


def serve(fd: int) -> None:
    """Inside the namespace: the app as ``cogumi serve`` builds it, on an inherited socket."""
    import uvicorn

    from cogumi.app import create_app
    from cogumi.config import Settings
    from cogumi.db.migrate import upgrade
    from cogumi.ops.logging import configure_logging

    settings = Settings()
    configure_logging(level=settings.log_level, log_format=settings.log_format)
    upgrade(settings.effective_database_url)
    # socket(fileno=...) keeps the inherited socket's real family (uvicorn's own ``fd``
    # option assumes a Unix socket, which leaves TCP_NODELAY off: 40 ms per answer).
    listener = socket.socket(fileno=fd)
    config = uvicorn.Config(create_app(settings), log_config=None, access_log=False)
    uvicorn.Server(config).run(sockets=[listener])


@contextlib.contextmanager
def fenced_server(env: dict[str, str], *, log_path: Path, agent: bool = False) -> Iterator[str]:
    """Serve the app in a fresh network namespace; yields its base URL on 127.0.0.1."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    command = [UNSHARE, "--net", "--", sys.executable, "-m", "tests.reliability.fenced_server"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--fd", str(fd), *(["--agent"] if agent else [])],
            cwd=REPO,
            env={**env, "PYTHONPATH": str(REPO)},
            pass_fds=(fd,),
            start_new_session=True,  # its own process group: the agent goes with it
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    listener.close()  # the server holds its own copy
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc, log_path)
        yield base
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server, then to what is left of its process group (the agent:
    uvicorn re-raises the signal it caught, so the server cannot stop it itself)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"fenced server exited: {log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base}/api/health", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("fenced server did not answer /api/health within 90 s")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--agent", action="store_true", help="start the demo agent first")
    args = parser.parse_args()
    os.set_inheritable(args.fd, True)
    if args.agent:
        loopback_up()
        start_agent()  # stopped with the process group (see _stop)
    serve(args.fd)


if __name__ == "__main__":
    main()
