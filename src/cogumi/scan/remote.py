"""``cogumi scan --server URL --api-key K --project ID``: the same campaign on a server.

Only the public API is used (the same one a pipeline would script by hand):
start the run, poll it until it ends, read its results and findings. The
report is built from the same API shapes as the embedded mode's, so the two
print identical documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx

from cogumi import __version__
from cogumi.runs.models import TERMINAL_STATUSES
from cogumi.scan.options import ConnectionProblem, ScanOptions
from cogumi.scan.progress import Progress
from cogumi.scan.report import ScanResult

POLL_SEC = 1.0
WAIT_MARGIN_SEC = 120.0
_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)


class ServerError(ConnectionProblem):
    """The server refused or could not be reached; the message says why (exit code 2)."""


def _explain(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and body.get("fields"):
        first = body["fields"][0]
        message = f"{first.get('field')}: {first.get('message')}"
    return f"HTTP {response.status_code}: {message or body}"


class Api:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerError(f"cannot reach the server {self.client.base_url}: {exc}") from exc
        if response.status_code == 401:
            raise ServerError("the server refused the API key (401): check --api-key")
        if not response.is_success:
            raise ServerError(f"{method} {path} failed: {_explain(response)}")
        return response.json()


def _run_body(options: ScanOptions) -> dict[str, Any]:
    """Omitted fields let the project's red-team config decide."""
    body: dict[str, Any] = {}
    if options.scripts:
        body["scripts"] = list(options.scripts)
    if options.intensity:
        body["intensity"] = options.intensity
    return body


async def _wait(api: Api, run: dict[str, Any], progress: Progress) -> None:
    run_id = run["id"]
    deadline = time.monotonic() + float(run.get("duration_cap_sec") or 900) + WAIT_MARGIN_SEC
    seen: set[str] = set()
    status = run["status"]
    while True:
        progress.status(f"run {status}")
        results = await api.call("GET", f"/api/runs/{run_id}/results")
        for row in results["items"]:
            if row["id"] not in seen:
                seen.add(row["id"])
                progress.script_done(row)
        if status in _TERMINAL:
            return
        if time.monotonic() > deadline:
            raise ServerError(f"run {run_id} did not end in time (still {status})")
        await asyncio.sleep(POLL_SEC)
        status = (await api.call("GET", f"/api/runs/{run_id}"))["status"]


async def run(options: ScanOptions, progress: Progress) -> ScanResult:
    assert options.server is not None and options.api_key and options.project
    base = options.server.rstrip("/")
    headers = {
        "Authorization": f"Bearer {options.api_key}",
        "User-Agent": f"cogumi-scan/{__version__}",
    }
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30.0) as client:
        api = Api(client)
        progress.status(f"starting a run on {base}")
        started = await api.call(
            "POST", f"/api/projects/{options.project}/runs", json=_run_body(options)
        )
        if started.get("warning"):
            progress.note(f"server warning: {started['warning']}")
        progress.note(f"run {started['id']} queued on {base}")
        try:
            await _wait(api, started, progress)
        except (asyncio.CancelledError, KeyboardInterrupt):
            with contextlib.suppress(Exception):
                await asyncio.shield(api.call("POST", f"/api/runs/{started['id']}/cancel"))
            raise
        run_id = started["id"]
        final = await api.call("GET", f"/api/runs/{run_id}")
        results = await api.call("GET", f"/api/runs/{run_id}/results")
        findings = await api.call("GET", f"/api/runs/{run_id}/findings")
    return ScanResult(
        run=final, results=results["items"], findings=findings["items"],
        run_url=f"{base}/runs/{run_id}",
    )  # fmt: skip
