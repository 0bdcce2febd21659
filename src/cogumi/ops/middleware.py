"""Pure ASGI middleware: a request id on every request, one access log line, metrics.

``X-Request-ID`` is taken from the request when it is a sane token (so a
load balancer's id follows the request through), else made up; it is sent
back on the response and attached to every log line written while the
request is served. The access line names the route *template*, never the raw
path or query string (an invitation link carries its token in the path).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cogumi.ops.logging import request_id
from cogumi.ops.metrics import Metrics

HEADER = b"x-request-id"
_VALID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
log = logging.getLogger("cogumi.access")


def incoming_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == HEADER and _VALID.match(value):
            return str(value.decode("ascii"))
    return uuid.uuid4().hex


def route_of(scope: Scope) -> str:
    """The matched route's template with the prefix it was mounted under (``/api/runs/{run_id}``).

    The route object knows only its own path; the prefix is the part of the
    request path before what the route's pattern matches.
    """
    route = scope.get("route")
    template, pattern = getattr(route, "path", None), getattr(route, "path_regex", None)
    if not isinstance(template, str) or pattern is None:
        return "<unmatched>"
    path = str(scope.get("path", ""))
    for cut in [0, *(i for i, ch in enumerate(path) if ch == "/" and i > 0)]:
        if pattern.match(path[cut:]):
            return path[:cut] + template
    return template


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_id(scope)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode("ascii"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._done(scope, status, time.perf_counter() - started)
            request_id.reset(token)

    def _done(self, scope: Scope, status: int, seconds: float) -> None:
        route, method = route_of(scope), str(scope.get("method", ""))
        self.metrics.request(method=method, route=route, status=status, seconds=seconds)
        fields = {"method": method, "route": route, "status": status,
                  "duration_ms": round(seconds * 1000, 1)}  # fmt: skip
        log.info("%s %s %d", method, route, status, extra={"fields": fields})
