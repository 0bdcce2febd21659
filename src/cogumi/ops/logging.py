"""Structured JSON logs with request ids, and no secrets in any line.

Every line is one JSON object: ``ts``, ``level``, ``logger``, ``message``,
the ``request_id`` of the request being served (if any), and the fields a
caller passed with ``extra={"fields": {...}}``. A filter on the handler masks
product tokens (``cgk_…``, ``cgs_…``), bearer credentials and anything the
secret detector recognises, in the message and in tracebacks, so a secret
that reached a log call by accident still never reaches the output.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cogumi_request_id", default=None
)

_TOKENS = re.compile(r"\b(cg[a-z])_([0-9a-f]{12})_[A-Za-z0-9_\-]+")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+")
# Secrets that travel in URLs: invitation links and OIDC callback parameters.
_PATH_TOKENS = re.compile(r"(/(?:api/)?invit(?:ations|e)/)(?!\{)[A-Za-z0-9_\-]{16,}")
_QUERY_SECRETS = re.compile(r"(?i)([?&](?:code|state|token|key|secret|api_key)=)[^&\s\"']+")
_SECRET_FIELDS = re.compile(
    r"(?i)((?:x-sidecar-token|x-cron-secret|authorization|cookie|password|secret)"
    r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;]+)"
)


def scrub(text: str) -> str:
    """``text`` with tokens, bearer credentials and detected secrets masked."""
    text = _TOKENS.sub(lambda m: f"{m.group(1)}_{m.group(2)}_[REDACTED]", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} [REDACTED]", text)
    text = _PATH_TOKENS.sub(lambda m: f"{m.group(1)}[REDACTED]", text)
    text = _QUERY_SECRETS.sub(lambda m: f"{m.group(1)}[REDACTED]", text)
    text = _SECRET_FIELDS.sub(lambda m: f"{m.group(1)}[REDACTED]", text)
    from cogumi.detect.redact import redact_text

    redacted, _ = redact_text(text, limit=16 * 1024)
    return redacted


class ScrubFilter(logging.Filter):
    """Masks secrets in the rendered message before any formatter sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            line["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if k not in line})
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = request_id.get()
        return f"{text} [request_id={rid}]" if rid else text


def make_handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ScrubFilter())
    return handler


def configure_logging(*, level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Route every logger (ours, uvicorn's, libraries') to one scrubbed handler on the root."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(log_format, stream))
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Our middleware logs each request (route template, status, request id) instead.
    logging.getLogger("uvicorn.access").disabled = True
