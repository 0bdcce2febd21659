"""A scale-out COGUMI deployment on loopback, made of real processes, for fault injection.

What :func:`start_cluster` brings up (everything torn down by :meth:`Cluster.close`,
also when start-up fails half-way):

- its own PostgreSQL database (``tests.databases``), migrated once before any
  process starts, so two ``serve`` processes never race to migrate;
- its own ``redis-server`` on a free port, without persistence, so it can be
  stopped and started (:meth:`Cluster.stop_redis` / :meth:`Cluster.start_redis`)
  without touching the Redis other tests use; a stop loses the queue, as a
  crashed Redis without persistence would;
- ``serve`` processes (default 2) and ``worker`` processes (default 2) configured
  for that database and Redis, with a short run lease and reaper interval;
- organisations signed up through the API (default 5), each with an ADMIN API
  key; and projects (default 20, round-robin over the orgs), each with a sidecar
  token and minted canaries from the API, a ``cogumi demo-agent`` process with
  one profile of :data:`PROFILES`, and a ``cogumi sidecar`` process for that
  project as the agent's ``HTTP_PROXY``. Sidecars ship to the ``serve``
  processes alternately. The first :data:`PROFILES`-many agents keep a minted
  canary as their secret; later ones keep a plain generated key, so both the
  canary path and the plain secret detector are exercised.

Every process writes stdout and stderr to ``<tmp>/logs/<name>.log``;
:meth:`Cluster.log_report` gives their tails (the reliability conftest prints
them when a test fails). Use it from a test or a benchmark::

    cluster = await start_cluster(tmp_path, orgs=5, projects=20)
    try:
        runs = await cluster.start_campaigns(cluster.projects)
        await cluster.wait_final(runs)
    finally:
        await cluster.close()
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cogumi.db.engine import make_engine, make_sessionmaker
from cogumi.db.migrate import upgrade
from cogumi.demo_agent.options import generate_secret
from cogumi.engine.library.loader import load_builtin
from cogumi.runs.models import Run
from cogumi.tenancy.deps import SESSION_COOKIE
from tests.conftest import _run_outside_loop
from tests.databases import create_pg_database, drop_pg_database
from tests.e2e.test_campaign_matrix import ALL_SCRIPTS, MATRIX, VULNERABLE
from tests.factories import PASSWORD, unique_email
from tests.reliability.processes import Proc, Serve, Worker, http_ok, until
from tests.scan.processes import clean_env
from tests.servers import free_port

COGUMI = str(Path(sys.executable).parent / "cogumi")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SECRET_KEY = "reliability-suite-secret-key"
LEASE_SEC = 5
REAPER_INTERVAL_SEC = 0.5
FINAL = frozenset({"completed", "failed", "canceled", "stopped_quota"})
SINK = "attacker-sink.local"
SENSITIVE = "/admin"

# (name, demo-agent arguments, categories it must be found with): the single-process
# matrix of tests/e2e/test_campaign_matrix.py plus its all-flaws profile.
PROFILES: list[tuple[str, list[str], set[str]]] = [
    *MATRIX,
    ("vulnerable", ["--profile", "vulnerable"], VULNERABLE),
]


def scripts_without(categories: Iterable[str]) -> list[str]:
    """Every built-in script except those whose technique is in one of ``categories``.

    Dropping whole categories keeps a profile's expected findings exact: they
    are the profile's categories minus the dropped ones.
    """
    library, dropped = load_builtin(), set(categories)
    return [s for s in ALL_SCRIPTS
            if library.technique_of(library.scripts[s]).category not in dropped]  # fmt: skip


# The fault scenarios run shorter campaigns: whole categories left out (see
# scripts_without), memory poisoning always, because it changes the agent's own
# state and a retried run (same run id) would meet an agent the lost attempt poisoned.
FAULT_DROPPED = frozenset({"memory_poisoning", "jailbreak", "data_exfiltration",
                           "privilege_escalation"})  # fmt: skip


@dataclass
class Org:
    name: str
    id: uuid.UUID
    email: str
    api_key: str
    session_token: str
    client: httpx.AsyncClient  # Bearer API key, no base URL: works against any serve


@dataclass
class Project:
    """A project with its demo agent and sidecar processes."""

    index: int
    org: Org
    id: str
    profile: str
    expected: set[str]
    secret: str
    secret_is_canary: bool
    canaries: list[str]
    sidecar_token: str
    agent: Proc
    sidecar: Proc
    agent_port: int
    sidecar_port: int
    ingest: int  # index of the serve its sidecar ships to


@dataclass
class Cluster:
    tmp: Path
    database_url: str
    redis_port: int
    env: dict[str, str]
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Proc
    serves: list[Serve] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    orgs: list[Org] = field(default_factory=list)
    projects: list[Project] = field(default_factory=list)
    retired: list[Proc] = field(default_factory=list)  # killed workers, kept for their logs
    agent_args: list[str] = field(default_factory=list)  # added to every demo agent's argv

    # --- addresses and processes ---------------------------------------------

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def url(self, serve: int = 0) -> str:
        return self.serves[serve].url

    def procs(self) -> list[Proc]:
        return [
            self.redis,
            *(s.proc for s in self.serves),
            *(w.proc for w in self.workers),
            *self.retired,
            *(p.sidecar for p in self.projects),
            *(p.agent for p in self.projects),
        ]

    def _proc(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        return Proc(name=name, argv=argv, env=env, log=self.tmp / "logs" / f"{name}.log")

    async def start_redis(self) -> None:
        """(Re)start the cluster's redis-server on its port, without persistence."""
        await self.redis.start()
        client: Redis = Redis.from_url(self.redis_url, socket_connect_timeout=1)

        async def answers() -> bool:
            self.redis.check_alive()
            try:
                return bool(await client.ping())
            except Exception:  # not listening yet
                return False

        try:
            await until(answers, timeout=30, what="redis-server")
        finally:
            await client.aclose()

    async def stop_redis(self) -> None:
        """Stop redis-server (SIGTERM; with no persistence its data is gone)."""
        await self.redis.stop()

    async def add_serve(self, port: int | None = None) -> Serve:
        port = port or free_port()
        name = f"serve-{len(self.serves)}"
        env = {**self.env, "COGUMI_DATA_DIR": str(self.tmp / name), "COGUMI_PORT": str(port)}
        serve = Serve(self._proc(name, [COGUMI, "serve", "--port", str(port)], env), port)
        self.serves.append(serve)
        await serve.proc.start()
        return serve

    async def restart_serve(self, index: int, *, kill: bool = False) -> Serve:
        """Stop one serve (SIGTERM, or SIGKILL) and start it again on the same port."""
        serve = self.serves[index]
        await (serve.proc.kill() if kill else serve.proc.stop())
        await serve.proc.start()
        await serve.wait_ready()
        return serve

    async def kill_worker(self, worker: Worker) -> None:
        """SIGKILL one worker; it leaves :attr:`workers` (its log stays in the report)."""
        await worker.proc.kill()
        self.workers.remove(worker)
        self.retired.append(worker.proc)

    async def add_worker(self) -> Worker:
        name = f"worker-{len(self.workers) + len(self.retired)}"
        env = {**self.env, "COGUMI_DATA_DIR": str(self.tmp / name)}
        worker = Worker(self._proc(name, [COGUMI, "worker"], env))
        self.workers.append(worker)
        await worker.proc.start()
        return worker

    # --- tenants and projects --------------------------------------------------

    async def signup(self, name: str) -> Org:
        """Register an owner through the API, then mint an ADMIN API key for machine calls."""
        email = unique_email("reliability")
        async with httpx.AsyncClient(base_url=self.url(), trust_env=False, timeout=30) as web:
            body = {"email": email, "password": PASSWORD, "org_name": name}
            me = await web.post("/api/auth/register", json=body)
            assert me.status_code == 201, me.text
            web.headers["X-CSRF-Token"] = me.json()["csrf_token"]
            key = await web.post("/api/api-keys", json={"name": "reliability", "role": "ADMIN"})
            assert key.status_code == 201, key.text
            session_token = web.cookies[SESSION_COOKIE]
        api_key = key.json()["key"]
        client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}"}, trust_env=False, timeout=30
        )
        return Org(name, uuid.UUID(me.json()["current_org"]["id"]), email, api_key,
                   session_token, client)  # fmt: skip

    async def add_project(self, org: Org, index: int) -> Project:
        """A project through the API, then its agent and sidecar processes (not awaited ready)."""
        name, args, expected = PROFILES[index % len(PROFILES)]
        agent_port, sidecar_port = free_port(), free_port()
        base = self.url()
        body = {"name": f"p{index:02d}-{name}", "agent_test_url": f"http://127.0.0.1:{agent_port}",
                "sink_domains": [SINK], "sensitive_paths": [SENSITIVE]}  # fmt: skip
        made = await org.client.post(f"{base}/api/projects", json=body)
        assert made.status_code == 201, made.text
        project_id = made.json()["id"]
        token = await org.client.post(f"{base}/api/projects/{project_id}/sidecar-tokens",
                                      json={"name": "reliability"})  # fmt: skip
        assert token.status_code == 201, token.text
        minted = await org.client.post(f"{base}/api/projects/{project_id}/canaries")
        assert minted.status_code == 201, minted.text
        canaries = {item["kind"]: item["value"] for item in minted.json()["items"]}
        is_canary = index < len(PROFILES)
        secret = canaries["OPENAI_KEY"] if is_canary else generate_secret()
        ingest = index % len(self.serves)
        proxy = f"http://127.0.0.1:{sidecar_port}"
        agent_env = clean_env(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, NO_PROXY="",
                              DEMO_AGENT_SECRET=secret)  # fmt: skip
        agent = self._proc(f"agent-{index:02d}-{name}", [
            COGUMI, "demo-agent", "--listen", f"127.0.0.1:{agent_port}", *args,
            *self.agent_args, "--log-level", "warning"], agent_env)  # fmt: skip
        sidecar_env = clean_env(
            SIDECAR_TOKEN=token.json()["token"], PROJECT_ID=project_id,
            INGEST_URL=self.url(ingest), BATCH_FLUSH_MS="200", HEARTBEAT_INTERVAL_SEC="1",
        )  # fmt: skip
        sidecar = self._proc(f"sidecar-{index:02d}",
                             [COGUMI, "sidecar", "--listen", f"127.0.0.1:{sidecar_port}"],
                             sidecar_env)  # fmt: skip
        project = Project(index=index, org=org, id=project_id, profile=name, expected=expected,
                          secret=secret, secret_is_canary=is_canary,
                          canaries=list(canaries.values()), sidecar_token=token.json()["token"],
                          agent=agent, sidecar=sidecar, agent_port=agent_port,
                          sidecar_port=sidecar_port, ingest=ingest)  # fmt: skip
        self.projects.append(project)
        await asyncio.gather(sidecar.start(), agent.start())
        return project

    async def wait_projects_ready(self, projects: list[Project], timeout: float = 120) -> None:
        async def ready(project: Project) -> None:
            health = f"http://127.0.0.1:{project.sidecar_port}/healthz"
            await until(lambda: http_ok("GET", health, watch=project.sidecar), timeout=timeout,
                        what=f"{project.sidecar.name}", every=0.2)  # fmt: skip
            agent = f"http://127.0.0.1:{project.agent_port}/health"
            await until(lambda: http_ok("POST", agent, watch=project.agent), timeout=timeout,
                        what=f"{project.agent.name}", every=0.2)  # fmt: skip

        await asyncio.gather(*(ready(p) for p in projects))

    # --- campaigns -------------------------------------------------------------

    async def start_campaigns(
        self,
        projects: Iterable[Project],
        *,
        scripts: list[str] | None = None,
        intensity: str = "low",
    ) -> dict[str, Project]:
        """One campaign per project, all at once, sent to the serves in turn; run id -> project."""
        body = {"scripts": scripts or ALL_SCRIPTS, "intensity": intensity}

        async def start(i: int, project: Project) -> tuple[str, Project]:
            url = f"{self.url(i % len(self.serves))}/api/projects/{project.id}/runs"
            response = await project.org.client.post(url, json=body)
            assert response.status_code == 201, response.text
            return response.json()["id"], project

        started = await asyncio.gather(*(start(i, p) for i, p in enumerate(projects)))
        return dict(started)

    async def statuses(self, run_ids: Iterable[str]) -> dict[str, Run]:
        ids = [uuid.UUID(r) for r in run_ids]
        async with self.sessionmaker() as session:
            rows = (await session.scalars(select(Run).where(Run.id.in_(ids)))).all()
        return {str(run.id): run for run in rows}

    async def wait_final(self, run_ids: Iterable[str], timeout: float = 240) -> dict[str, Run]:
        """Until every run has ended; the runs as stored."""
        ids = list(run_ids)
        latest: dict[str, Run] = {}

        async def ended() -> bool:
            nonlocal latest
            latest = await self.statuses(ids)
            return len(latest) == len(ids) and all(r.status.value in FINAL for r in latest.values())

        try:
            await until(ended, timeout=timeout, what="every run to end", every=0.5)
        except AssertionError as exc:
            stuck = {k: (v.status.value, v.lease_owner) for k, v in latest.items()
                     if v.status.value not in FINAL}  # fmt: skip
            raise AssertionError(f"{exc}; still open: {stuck}") from None
        return latest

    # --- diagnostics and teardown -----------------------------------------------

    def log_report(self, lines: int = 25) -> str:
        """Tails of the logs of the core processes and of any process that died."""
        parts = [f"process logs: {self.tmp / 'logs'}"]
        for proc in self.procs():
            core = not proc.name.startswith(("agent-", "sidecar-"))
            if core or not proc.alive:
                state = (
                    "running"
                    if proc.alive
                    else f"exited {proc.process and proc.process.returncode}"
                )
                parts.append(f"===== {proc.name} ({state}) =====\n{proc.tail(lines)}")
        return "\n".join(parts)

    async def sql(self, query: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(text(query), params)).all())

    async def close(self) -> None:
        """Stop everything, outside in: agents and sidecars first (a sidecar flushes to a
        serve that is still up), then workers, serves, Redis."""
        for org in self.orgs:
            await org.client.aclose()
        tiers = [
            [proc for p in self.projects for proc in (p.agent, p.sidecar)],
            [w.proc for w in self.workers],
            [s.proc for s in self.serves],
            [self.redis],
        ]
        for tier in tiers:
            await asyncio.gather(*(p.stop(timeout=10) for p in tier), return_exceptions=True)
        await self.engine.dispose()


async def start_cluster(
    tmp: Path,
    *,
    serves: int = 2,
    workers: int = 2,
    orgs: int = 5,
    projects: int = 20,
    env: Mapping[str, str] | None = None,
    agent_args: Sequence[str] = (),
) -> Cluster:
    """Bring the whole deployment up (see the module docstring); closes it if start-up fails.

    ``env`` overrides the processes' settings (a benchmark restores production
    lease and reaper intervals); ``agent_args`` go to every demo agent (e.g.
    ``["--latency-ms", "100"]``).
    """
    database_url = await asyncio.to_thread(create_pg_database)
    try:
        _run_outside_loop(upgrade, database_url)
        cluster = _new_cluster(tmp, database_url)
        cluster.env.update(env or {})
        cluster.agent_args = list(agent_args)
    except BaseException:
        await asyncio.to_thread(drop_pg_database, database_url)
        raise
    try:
        await _bring_up(cluster, serves=serves, workers=workers, orgs=orgs, projects=projects)
    except BaseException:
        await stop_cluster(cluster)
        raise
    return cluster


async def stop_cluster(cluster: Cluster) -> None:
    """Stop every process and drop the cluster's database."""
    try:
        await cluster.close()
    finally:
        await asyncio.to_thread(drop_pg_database, cluster.database_url)


def _new_cluster(tmp: Path, database_url: str) -> Cluster:
    redis_port = free_port()
    env = {k: v for k, v in clean_env().items()}
    env.update({
        "COGUMI_DATABASE_URL": database_url,
        "COGUMI_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "COGUMI_SECRET_KEY": SECRET_KEY,
        "COGUMI_RUN_LEASE_SEC": str(LEASE_SEC),
        # Small pools: the suite's processes share one PostgreSQL with other tests.
        "COGUMI_DATABASE_POOL_SIZE": "4",
        "COGUMI_DATABASE_MAX_OVERFLOW": "6",
        "COGUMI_RUN_REAPER_INTERVAL_SEC": str(REAPER_INTERVAL_SEC),
        "COGUMI_RETENTION_INTERVAL_SEC": "0",
        "COGUMI_SHUTDOWN_GRACE_SEC": "5",
        "COGUMI_LOGIN_RATE_LIMIT": "10000",
        # The suite is about losing nothing, not about throttling (item 5 tests that).
        "COGUMI_INGEST_RATE_LIMIT_PER_MIN": "1000000",
        "COGUMI_QUOTA_PROJECTS": "1000",
        "COGUMI_QUOTA_RUNS_PER_MONTH": "100000",
        "COGUMI_QUOTA_RUNS_PER_DAY_PER_PROJECT": "10000",
        "COGUMI_LOG_LEVEL": "INFO",
    })  # fmt: skip
    engine = make_engine(database_url)
    redis = Proc(
        name="redis",
        argv=[
            REDIS_SERVER,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        env=clean_env(),
        log=tmp / "logs" / "redis.log",
    )
    return Cluster(tmp=tmp, database_url=database_url, redis_port=redis_port, env=env,
                   engine=engine, sessionmaker=make_sessionmaker(engine), redis=redis)  # fmt: skip


async def _bring_up(
    cluster: Cluster, *, serves: int, workers: int, orgs: int, projects: int
) -> None:
    await cluster.start_redis()
    for _ in range(serves):
        await cluster.add_serve()
    for _ in range(workers):
        await cluster.add_worker()
    await asyncio.gather(*(s.wait_ready() for s in cluster.serves))
    cluster.orgs = [await cluster.signup(f"reliability-org-{i}") for i in range(orgs)]
    made = await asyncio.gather(
        *(cluster.add_project(cluster.orgs[i % orgs], i) for i in range(projects))
    )
    cluster.projects.sort(key=lambda p: p.index)
    await asyncio.gather(*(w.wait_ready() for w in cluster.workers))
    await cluster.wait_projects_ready(list(made))


def secrets_of(cluster: Cluster) -> dict[str, str]:
    """Every raw secret the deployment handed out or the agents hold: label -> value."""
    found: dict[str, str] = {}
    for org in cluster.orgs:
        found[f"{org.name} API key"] = org.api_key
        found[f"{org.name} session token"] = org.session_token
    for project in cluster.projects:
        found[f"{project.agent.name} planted secret"] = project.secret
        found[f"{project.sidecar.name} token"] = project.sidecar_token
        for i, value in enumerate(project.canaries):
            found[f"{project.agent.name} canary {i}"] = value
    return found
