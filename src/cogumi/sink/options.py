"""Options of ``cogumi sink``: its own listen addresses and certificate settings,
plus the sidecar's shipping options (same names, same env variables), declared
once in :mod:`cogumi.sidecar.options` and reused here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cogumi.sidecar.options import (
    SPECS,
    OptionSpec,
    SidecarOptions,
    build_parser,
    check_listen,
    merge,
)

_SHARED = (
    "ingest_url", "token", "project_id", "heartbeat_interval", "batch_max_events",
    "batch_flush_ms", "buffer_max_events", "throttle_per_window", "throttle_window_sec",
    "sink_domains", "client_idle_timeout", "shutdown_timeout", "preview_bytes", "log_level",
)  # fmt: skip
_SHARED_SPECS = {spec.name: spec for spec in SPECS if spec.name in _SHARED}
_SHARED_SPECS["preview_bytes"] = dataclasses.replace(
    _SHARED_SPECS["preview_bytes"],
    default=32 * 1024,
    help="Body bytes kept per request for detection and the redacted preview.",
)
_SHARED_SPECS["sink_domains"] = dataclasses.replace(
    _SHARED_SPECS["sink_domains"],
    help="Name the sink is reached by; goes into its certificate (repeatable).",
)

SINK_SPECS: tuple[OptionSpec, ...] = (
    OptionSpec("listen", str, "127.0.0.1:8088", "Address the plain HTTP side listens on, HOST:PORT.", "SINK_LISTEN", metavar="HOST:PORT"),
    OptionSpec("tls_listen", str, "127.0.0.1:8443", "Address the HTTPS side listens on, HOST:PORT (self-signed certificate made at start); 'off' disables it.", "SINK_TLS_LISTEN", metavar="HOST:PORT"),
    OptionSpec("cert_file", str, None, "Where to write the generated certificate (PEM) for clients to trust; default: a fresh temporary directory.", "SINK_CERT_FILE", metavar="FILE"),
    OptionSpec("tls_name", list, [], "Extra DNS name or IP address for the certificate (repeatable); the sink domains, localhost and 127.0.0.1 are always in.", metavar="NAME"),
    *_SHARED_SPECS.values(),
)  # fmt: skip

DESCRIPTION = (
    "Attacker sink for your sandbox network: answers any request over HTTP and HTTPS "
    "with 200 {} and reports each one (redacted) to the ingest API with a sidecar token."
)


@dataclass(frozen=True, slots=True)
class SinkOptions:
    shipping: SidecarOptions  # what the shared shipper needs (ingest, batching, throttle)
    listen: str = "127.0.0.1:8088"
    tls_listen: str | None = "127.0.0.1:8443"
    cert_file: str | None = None
    tls_names: tuple[str, ...] = ()


def from_argv(argv: Sequence[str], env: Mapping[str, str]) -> SinkOptions:
    parser = build_parser(SINK_SPECS, prog="cogumi sink", description=DESCRIPTION)
    namespace = vars(parser.parse_args(list(argv)))
    config_file = namespace.pop("config", None)
    values = merge(namespace, env, config_file, SINK_SPECS)
    listen = values.pop("listen", "127.0.0.1:8088")
    tls_listen = values.pop("tls_listen", "127.0.0.1:8443")
    cert_file = values.pop("cert_file", None)
    tls_names = values.pop("tls_name", ())
    values.setdefault("preview_bytes", _SHARED_SPECS["preview_bytes"].default)
    check_listen(listen)
    tls = None if tls_listen.strip().lower() in ("", "off", "none") else tls_listen
    if tls is not None:
        check_listen(tls, "--tls-listen")
    return SinkOptions(
        shipping=SidecarOptions(listen=listen, **values),
        listen=listen,
        tls_listen=tls,
        cert_file=cert_file,
        tls_names=tuple(tls_names),
    )


def documented_names() -> list[str]:
    return [spec.name for spec in SINK_SPECS]
