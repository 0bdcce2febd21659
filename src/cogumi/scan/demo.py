"""``cogumi demo``: the whole product on loopback, one campaign, then keep serving.

In this process: the API and run worker (embedded store) and a sidecar.
As a child process: ``cogumi demo-agent --profile vulnerable`` with
``HTTP_PROXY``/``HTTPS_PROXY`` at the sidecar and a freshly minted canary as
the secret it guards, so every leak is exact. Ctrl-C (or SIGTERM) stops the
agent, the sidecar and the server in that order; nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cogumi.db.engine import transaction
from cogumi.projects import canaries
from cogumi.projects import service as projects_service
from cogumi.projects.schemas import ProjectCreate
from cogumi.scan import stack
from cogumi.scan.options import DEFAULT_SCRIPTS, INTENSITIES
from cogumi.scan.report import ScanResult, summary_lines
from cogumi.sidecar.options import DEFAULT_SINK
from cogumi.tasks import spawn

AGENT_START_SEC = 30.0
AGENT_STOP_SEC = 10.0


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cogumi demo",
        description="Start the server, a sidecar and a deliberately vulnerable demo agent on "
        "loopback, run one campaign against the agent, print the run page, keep serving.",
    )
    add = parser.add_argument
    add("--port", type=int, default=0, help="API port on 127.0.0.1 (default: any free port).")
    add("--data-dir", default=None, metavar="DIR",
        help="Keep the store in DIR (default: a temporary directory, removed at exit).")  # fmt: skip
    add("--intensity", choices=INTENSITIES, default="low", help="Variants per step (default low).")
    add("--scripts", default=",".join(DEFAULT_SCRIPTS), metavar="IDS",
        help="Scripts to run, comma-separated (default S1..S5).")  # fmt: skip
    add("--no-wait", action="store_true", help="Exit once the campaign has finished.")
    return parser


@dataclass
class DemoAgent:
    proc: asyncio.subprocess.Process
    url: str


def _agent_env(proxy_url: str, secret: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HTTP_PROXY=proxy_url, HTTPS_PROXY=proxy_url, DEMO_AGENT_SECRET=secret)
    return env


@contextlib.asynccontextmanager
async def demo_agent(proxy_url: str, secret: str) -> AsyncIterator[DemoAgent]:
    """The vulnerable agent as a child process; stopped (SIGTERM, then SIGKILL) on exit.
    The secret travels in its environment, never on a command line others can read."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cogumi", "demo-agent", "--listen", "127.0.0.1:0",
        "--profile", "vulnerable", "--sink-domain", DEFAULT_SINK,
        env=_agent_env(proxy_url, secret), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(AGENT_START_SEC):
            line = (await proc.stdout.readline()).decode()
        if not line.startswith("cogumi demo-agent: agent "):
            raise RuntimeError(f"the demo agent did not start: {line.strip() or 'no output'}")
        drain = spawn(proc.stdout.read(), name="demo-agent-stdout")
        yield DemoAgent(proc=proc, url=line.split()[3])
        drain.cancel()
    finally:
        await _stop(proc)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(AGENT_STOP_SEC):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _demo_project() -> ProjectCreate:
    return ProjectCreate.model_validate(
        {
            "name": "Demo agent (vulnerable)",
            "description": "The built-in demo agent with every flaw switched on.",
            "sensitive_paths": ["/admin"],
            "sink_domains": [DEFAULT_SINK],
        }
    )


async def _mint_and_point(
    api: stack.LocalApi, workspace: stack.Workspace, agent_url: str | None = None
) -> dict[str, str]:
    """Mint the project's canaries (no agent URL yet) or set the agent URL."""
    async with transaction(api.sessionmaker) as session:
        project = await projects_service.get_project(
            session=session, org_id=workspace.member.org_id, project_id=workspace.project_id
        )
        if agent_url is not None:
            await projects_service.update_project(
                session=session, member=workspace.member, project=project,
                changes={"agent_test_url": agent_url}, settings=api.settings,
            )  # fmt: skip
            return {}
        minted = await canaries.mint(session, member=workspace.member, project=project)
    return minted.values


async def _campaign(
    api: stack.LocalApi, workspace: stack.Workspace, args: argparse.Namespace
) -> uuid.UUID:
    scripts = [s.strip() for s in args.scripts.split(",") if s.strip()]
    run_id = await stack.start_run(api, workspace, scripts=scripts, intensity=args.intensity)
    say(f"Run page:   {api.base_url}/runs/{run_id}")
    say(f"Campaign:   {', '.join(scripts)} at intensity {args.intensity} ...")
    await stack.wait_for_run(
        api, workspace, run_id, on_status=lambda _s: None,
        on_result=lambda r: say(f"  {r['script_id']}: {r['result']} (score {r['score']})"),
    )  # fmt: skip
    return run_id


async def _demo(args: argparse.Namespace, data_dir: Path, stop: asyncio.Event) -> None:
    sock = stack.bind_loopback(f"127.0.0.1:{args.port}")
    settings = stack.embedded_settings(data_dir, port=int(sock.getsockname()[1]))
    await asyncio.to_thread(stack.migrate, settings)
    password = secrets.token_urlsafe(12)
    async with stack.local_api(settings, sock) as api:
        email = f"demo-{uuid.uuid4().hex[:8]}@example.com"
        workspace = await stack.create_workspace(
            api, project=_demo_project(), email=email, password=password, org_name="COGUMI demo"
        )
        planted = await _mint_and_point(api, workspace)
        options = stack.sidecar_options(api, workspace, "127.0.0.1:0", sensitive_paths=["/admin"])
        async with stack.running_sidecar(api, workspace, options) as sidecar:
            assert sidecar.address is not None
            proxy = f"http://127.0.0.1:{sidecar.address[1]}"
            async with demo_agent(proxy, planted["OPENAI_KEY"]) as agent:
                await _mint_and_point(api, workspace, agent.url)
                say(f"COGUMI AI Protect demo on {api.base_url}")
                say(f"Log in:     {email}  password {password}")
                say(f"Sidecar:    {proxy}   demo agent: {agent.url} (pid {agent.proc.pid})")
                run_id = await _until_stopped(_campaign(api, workspace, args), stop)
                if run_id is not None:
                    await _summary(api, workspace, run_id, planted)
                if not args.no_wait and not stop.is_set():
                    say("Serving until Ctrl-C.")
                    await stop.wait()
    say("Stopped: demo agent, sidecar and server are down.")


async def _until_stopped(
    work: Coroutine[Any, Any, uuid.UUID], stop: asyncio.Event
) -> uuid.UUID | None:
    """Run the campaign unless Ctrl-C comes first (then it is abandoned with the store)."""
    task = spawn(work, name="demo-campaign")
    stopper = spawn(stop.wait(), name="demo-stop")
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    result: uuid.UUID = task.result()
    return result


async def _summary(
    api: stack.LocalApi, workspace: stack.Workspace, run_id: uuid.UUID, planted: dict[str, str]
) -> None:
    collected = await stack.collect(api, workspace, run_id)
    result = ScanResult(
        run=collected.run, results=collected.results, findings=collected.findings,
        canaries=tuple(planted.values()),
    )  # fmt: skip
    for line in summary_lines(result):
        say(line)


async def _main(args: argparse.Namespace, data_dir: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await _demo(args, data_dir, stop)


def _unknown_scripts(value: str) -> list[str]:
    from cogumi.engine.library.loader import load_builtin

    known = load_builtin().scripts
    return [s.strip() for s in value.split(",") if s.strip() and s.strip() not in known]


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    unknown = _unknown_scripts(args.scripts)
    if unknown:
        sys.stderr.write(f"cogumi demo: --scripts: unknown script id(s) {', '.join(unknown)}\n")
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        if args.data_dir:
            asyncio.run(_main(args, Path(args.data_dir)))
        else:
            with tempfile.TemporaryDirectory(prefix="cogumi-demo-") as tmp:
                asyncio.run(_main(args, Path(tmp)))
    except OSError as exc:
        sys.stderr.write(f"cogumi demo: {exc}\n")
        return 2
    return 0
