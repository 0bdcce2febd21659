"""``cogumi scan --target URL``: one campaign with an embedded store, no server to install.

Order matters for the user: everything that can be wrong with the command
line or the target is found *before* a store is created or a campaign starts,
so a typo or a stopped agent costs a second, not a campaign.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cogumi.engine.library.loader import Library, LibraryError, load_builtin, parse_custom
from cogumi.projects.schemas import ProjectCreate
from cogumi.projects.validation import validate_endpoint
from cogumi.scan import stack
from cogumi.scan.options import (
    DEFAULT_SCRIPTS,
    ConnectionProblem,
    ScanOptions,
    UsageError,
    flag_of,
)
from cogumi.scan.progress import Progress
from cogumi.scan.report import ScanResult


class TargetUnreachable(ConnectionProblem):
    """The agent endpoint did not answer; the message says what happened (exit code 2)."""


def project_body(options: ScanOptions) -> ProjectCreate:
    """The internal project for this scan; a bad value is a usage error naming the flag."""
    host = (options.target or "").split("://", 1)[-1].split("/", 1)[0][:80]
    data: dict[str, Any] = {"name": f"scan {host}", **options.project_fields()}
    try:
        return ProjectCreate.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        raise UsageError(f"{flag_of(error.get('loc', ()))}: {message}") from exc


def custom_ids(options: ScanOptions, base: Library) -> frozenset[str]:
    """Validate ``--scripts-file`` like the API does; its script ids."""
    if options.custom_document is None:
        return frozenset()
    try:
        custom = parse_custom(options.custom_document, base=base)
    except LibraryError as exc:
        detail = exc.fields["fields"][0]
        raise UsageError(
            f"--scripts-file {options.scripts_file}: field {detail['field']}: {detail['message']}"
        ) from exc
    return frozenset(s.id for s in custom.scripts)


def chosen_scripts(options: ScanOptions, base: Library, custom: frozenset[str]) -> list[str]:
    scripts = list(options.scripts) or (sorted(custom) if custom else list(DEFAULT_SCRIPTS))
    unknown = [s for s in scripts if s not in base.scripts and s not in custom]
    if unknown:
        raise UsageError(
            f"--scripts: unknown script id(s) {', '.join(unknown)} "
            "(built-in: S1..S5, P01..P16; custom ids come from --scripts-file)"
        )
    return scripts


async def check_target(options: ScanOptions) -> str:
    """``POST /health`` (ping fallback) for the native contract; any HTTP answer otherwise."""
    assert options.target is not None
    settings = stack.embedded_settings(Path("."), port=1)
    check = await validate_endpoint(options.target, settings=settings)
    if check.ok or (options.adapter != "native" and check.status_code is not None):
        return check.reason
    raise TargetUnreachable(f"cannot reach the target {options.target}: {check.reason}")


async def run(options: ScanOptions, progress: Progress, data_dir: Path) -> ScanResult:
    """Preflight, then store + API + worker (+ sidecar) on loopback, one campaign, results."""
    body = project_body(options)
    base = load_builtin()
    custom = custom_ids(options, base)
    scripts = chosen_scripts(options, base, custom)
    progress.status(f"checking the target {options.target}")
    progress.note(f"target answered: {await check_target(options)}")
    sock = stack.bind_loopback()
    settings = stack.embedded_settings(data_dir, port=int(sock.getsockname()[1]))
    progress.status(f"preparing the embedded store in {data_dir}")
    await asyncio.to_thread(stack.migrate, settings)
    async with stack.local_api(settings, sock) as api:
        workspace = await stack.create_workspace(
            api, project=body, email=f"scan-{uuid.uuid4().hex[:12]}@example.com",
            custom_document=options.custom_document,
        )  # fmt: skip
        async with contextlib.AsyncExitStack() as sidecar_scope:
            if options.sidecar_listen:
                await _start_sidecar(sidecar_scope, api, workspace, options, progress)
            run_id = await stack.start_run(
                api, workspace, scripts=scripts, intensity=options.intensity or "low",
                custom_ids=custom,
            )  # fmt: skip
            progress.note(f"run {run_id}: scripts {', '.join(scripts)}")
            await stack.wait_for_run(
                api, workspace, run_id,
                on_status=lambda s: progress.status(f"run {s}"), on_result=progress.script_done,
            )  # fmt: skip
        return await stack.collect(api, workspace, run_id)


async def _start_sidecar(
    scope: contextlib.AsyncExitStack,
    api: stack.LocalApi,
    workspace: stack.Workspace,
    options: ScanOptions,
    progress: Progress,
) -> None:
    assert options.sidecar_listen is not None
    sidecar_options = stack.sidecar_options(
        api, workspace, options.sidecar_listen, sink_domains=options.sink_domains,
        tool_domains=options.tool_domains, internal_suffixes=options.internal_suffixes,
        sensitive_paths=options.sensitive_paths,
    )  # fmt: skip
    progress.status(f"starting the sidecar on {options.sidecar_listen}")
    try:
        sidecar = await scope.enter_async_context(
            stack.running_sidecar(api, workspace, sidecar_options)
        )
    except OSError as exc:
        raise UsageError(
            f"--sidecar-listen {options.sidecar_listen}: {exc.strerror or exc}"
        ) from exc
    assert sidecar.address is not None
    host, port = sidecar.address[:2]
    progress.note(f"sidecar proxy on http://{host}:{port} (the agent's HTTP_PROXY)")
