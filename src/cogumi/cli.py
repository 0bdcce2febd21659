"""The ``cogumi`` command. Each command imports what it needs lazily, so the
sidecar never pulls in the database stack."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="COGUMI AI Protect: red-team your AI agent before it ships.", no_args_is_help=True
)


@app.command()
def version() -> None:
    """Print the version."""
    from cogumi import __version__

    typer.echo(__version__)


@app.command()
def migrate() -> None:
    """Apply database migrations (also done automatically by ``serve``)."""
    from cogumi.config import Settings
    from cogumi.db.migrate import upgrade

    settings = Settings()
    upgrade(settings.effective_database_url)
    typer.echo("database is up to date")


@app.command()
def serve(
    host: str = typer.Option(None, help="Bind address (default: COGUMI_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: COGUMI_PORT or 8000)."),
    workers: int = typer.Option(
        None,
        min=1,
        help="Processes serving the port (default: COGUMI_SERVE_WORKERS or 1). More than one "
        "needs COGUMI_REDIS_URL; campaigns then run in `cogumi worker` processes.",
    ),
) -> None:
    """Migrate the database, then serve the web UI and JSON API.

    On SIGTERM/SIGINT it stops accepting connections, lets in-flight requests finish
    (up to COGUMI_SHUTDOWN_GRACE_SEC), then hands its running campaigns back to the queue.
    """
    import os

    import uvicorn

    from cogumi.app import create_app, settle_heap
    from cogumi.config import Settings
    from cogumi.db.migrate import upgrade
    from cogumi.ops.logging import configure_logging

    settings = Settings()
    settings = settings.model_copy(
        update={
            "host": host or settings.host,
            "port": port or settings.port,
            "serve_workers": workers or settings.serve_workers,
        }
    )
    if settings.serve_workers > 1 and not settings.redis_url:
        typer.echo(
            "cogumi serve: --workers above 1 needs COGUMI_REDIS_URL (processes must share "
            "rate limits, the live bus and the run queue)",
            err=True,
        )
        raise typer.Exit(2)
    configure_logging(level=settings.log_level, log_format=settings.log_format)
    upgrade(settings.effective_database_url)
    settings.resolved_secret_key()
    where = "SQLite in " + str(settings.data_dir.resolve()) if settings.is_sqlite else "PostgreSQL"
    typer.echo(f"COGUMI AI Protect on {settings.base_url}  (store: {where})")
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,  # keep the JSON handler configured above
        "access_log": False,  # our middleware logs each request with its id
        "timeout_graceful_shutdown": settings.shutdown_grace_sec,
    }
    if settings.serve_workers == 1:
        app = create_app(settings)
        settle_heap()
        uvicorn.run(app, **common)  # type: ignore[arg-type]
        return
    # Worker processes start afresh and read their settings from the environment.
    os.environ["COGUMI_HOST"], os.environ["COGUMI_PORT"] = settings.host, str(settings.port)
    uvicorn.run(
        "cogumi.app:create_app_from_environment",
        factory=True,
        workers=settings.serve_workers,
        **common,  # type: ignore[arg-type]
    )


@app.command()
def worker(
    executor: str = typer.Option(
        None, hidden=True, help="Campaign executor as module:function (default: the engine)."
    ),
    metrics_listen: str = typer.Option(
        None,
        help="Serve Prometheus /metrics on HOST:PORT (default: COGUMI_WORKER_METRICS_LISTEN; "
        "unset: no metrics endpoint).",
    ),
) -> None:
    """Execute campaigns from the Redis queue (scale-out mode; needs COGUMI_REDIS_URL).

    Also sends the webhooks its runs cause, and reaps runs of dead workers.
    """
    import asyncio

    from cogumi.config import Settings
    from cogumi.ops.logging import configure_logging
    from cogumi.ops.metrics_server import ListenError, parse_listen
    from cogumi.runs.runtime import load_executor, run_worker_process

    settings = Settings()
    if not settings.redis_url:
        typer.echo("cogumi worker: set COGUMI_REDIS_URL (embedded `serve` runs its own worker)")
        raise typer.Exit(2)
    listen = metrics_listen or settings.worker_metrics_listen
    if listen:
        try:
            parse_listen(listen)
        except ValueError as exc:
            typer.echo(f"cogumi worker: --metrics-listen: {exc}", err=True)
            raise typer.Exit(2) from exc
        settings = settings.model_copy(update={"worker_metrics_listen": listen})
    configure_logging(level=settings.log_level, log_format=settings.log_format)
    chosen = load_executor(executor) if executor else None
    try:
        asyncio.run(run_worker_process(settings, executor=chosen))
    except ListenError as exc:
        typer.echo(f"cogumi worker: metrics: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def sidecar(ctx: typer.Context) -> None:
    """Forward proxy beside your agent: records and ships redacted events (--help for options)."""
    from cogumi.sidecar.options import OptionsError
    from cogumi.sidecar.runner import main as sidecar_main

    try:
        sidecar_main(ctx.args)
    except OptionsError as exc:
        typer.echo(f"cogumi sidecar: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command(
    name="demo-agent",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def demo_agent(ctx: typer.Context) -> None:
    """Deliberately vulnerable tool-using agent with switchable flaws (--help for options)."""
    from cogumi.demo_agent.options import OptionsError
    from cogumi.demo_agent.server import main as demo_agent_main

    try:
        demo_agent_main(ctx.args)
    except OptionsError as exc:
        typer.echo(f"cogumi demo-agent: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def sink(ctx: typer.Context) -> None:
    """Attacker sink for your sandbox: answers any HTTP(S) request, reports it (--help)."""
    from cogumi.sidecar.options import OptionsError
    from cogumi.sink.runner import main as sink_main

    try:
        sink_main(ctx.args)
    except OptionsError as exc:
        typer.echo(f"cogumi sink: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def scan(ctx: typer.Context) -> None:
    """One campaign against an agent (embedded store or --server); exit code by --fail-on."""
    from cogumi.scan.command import main as scan_main

    raise typer.Exit(scan_main(ctx.args))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def demo(ctx: typer.Context) -> None:
    """Everything on loopback: server, sidecar, vulnerable demo agent, one campaign (--help)."""
    from cogumi.scan.demo import main as demo_main

    raise typer.Exit(demo_main(ctx.args))


@app.command(name="verify-bundle")
def verify_bundle(
    file: str = typer.Argument(..., help="Evidence bundle JSON (GET /api/runs/{id}/bundle)."),
    root: str = typer.Option(None, help="Root hash it must have (printed in the run's report)."),
) -> None:
    """Check an evidence bundle offline; names the first tampered item (exit 1)."""
    import json

    from cogumi.reports.bundle import verify

    try:
        with open(file, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as exc:
        typer.echo(f"cogumi verify-bundle: cannot read {file}: {exc}", err=True)
        raise typer.Exit(2) from exc
    result = verify(document, expected_root=root)
    if not result.ok:
        typer.echo(f"TAMPERED: {result.problem}")
        raise typer.Exit(1)
    typer.echo(f"OK: every hash matches (root {result.root})")


admin_app = typer.Typer(
    help="Operator commands for a self-hosted deployment.", no_args_is_help=True
)
admin_quotas = typer.Typer(help="Per-organisation quota overrides.", no_args_is_help=True)
admin_app.add_typer(admin_quotas, name="quotas")
app.add_typer(admin_app, name="admin")


@admin_quotas.command("set")
def admin_quotas_set(
    org: str = typer.Option(..., "--org", help="Organisation id."),
    projects: int = typer.Option(None, min=1, help="Most projects."),
    runs_per_month: int = typer.Option(None, min=1, help="Most runs per month."),
    runs_per_day_per_project: int = typer.Option(None, min=1, help="Most runs per project-day."),
    events_per_run: int = typer.Option(None, min=10, help="Most events one run may hold."),
    storage_bytes: int = typer.Option(None, min=1, help="Estimated storage limit, in bytes."),
    reset: list[str] = typer.Option(
        [], help="Quota name to put back to the deployment default (repeatable)."
    ),
) -> None:
    """Override an organisation's quotas (also shows its usage afterwards)."""
    import asyncio
    import uuid

    from cogumi.config import Settings
    from cogumi.errors import NotFound
    from cogumi.quotas.admin import set_quotas
    from cogumi.quotas.service import QUOTA_NAMES

    try:
        org_id = uuid.UUID(org)
    except ValueError as exc:
        typer.echo(f"cogumi admin quotas set: --org is not an id: {org!r}", err=True)
        raise typer.Exit(2) from exc
    unknown = [name for name in reset if name not in QUOTA_NAMES]
    if unknown:
        typer.echo(f"cogumi admin quotas set: unknown quota {unknown[0]!r}; "
                   f"known: {', '.join(QUOTA_NAMES)}", err=True)  # fmt: skip
        raise typer.Exit(2)
    given = {"projects": projects, "runs_per_month": runs_per_month,
             "runs_per_day_per_project": runs_per_day_per_project,
             "events_per_run": events_per_run, "storage_bytes": storage_bytes}  # fmt: skip
    changes: dict[str, int | None] = {k: v for k, v in given.items() if v is not None}
    changes.update({name: None for name in reset})
    if not changes:
        typer.echo("cogumi admin quotas set: give at least one quota or --reset", err=True)
        raise typer.Exit(2)
    try:
        items = asyncio.run(set_quotas(Settings(), org_id=org_id, changes=changes))
    except NotFound as exc:
        typer.echo(f"cogumi admin quotas set: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    for item in items:
        mark = " (override)" if item["overridden"] else ""
        typer.echo(f"{item['quota']}: {item['used']} of {item['limit']}{mark}")


def main() -> None:
    app()
