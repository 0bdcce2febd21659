"""Sidecar options: declared once, resolved from flags > env > YAML file.

Each :class:`OptionSpec` carries the name, type, default, help and (for the
names CONTRACTS.md fixes) the environment variable. The CLI parser, the env
reader, the file reader and the docs table are all derived from ``SPECS``; the
result is one frozen :class:`SidecarOptions` passed explicitly to the proxy
and the shipper, never read from globals.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEFAULT_SINK = "attacker-sink.local"


class OptionsError(ValueError):
    """A bad option value; the message names the option and where it came from."""


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str
    kind: type  # str, int, float or list (of str)
    default: Any
    help: str
    env: str | None = None
    minimum: float | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        singular = {"sink_domains": "sink-domain", "tool_domains": "tool-domain"}
        singular |= {"internal_suffixes": "internal-suffix", "sensitive_paths": "sensitive-path"}
        return "--" + singular.get(self.name, self.name.replace("_", "-"))


SPECS: tuple[OptionSpec, ...] = (
    OptionSpec("listen", str, "127.0.0.1:8080", "Address the proxy listens on, HOST:PORT.", "SIDECAR_LISTEN", metavar="HOST:PORT"),
    OptionSpec("ingest_url", str, None, "Base URL of the COGUMI API that receives events.", "INGEST_URL", metavar="URL"),
    OptionSpec("token", str, None, "Sidecar token of the project (shown once when created).", "SIDECAR_TOKEN"),
    OptionSpec("project_id", str, None, "Project the events belong to.", "PROJECT_ID"),
    OptionSpec("heartbeat_interval", float, 15.0, "Seconds between heartbeats.", "HEARTBEAT_INTERVAL_SEC", 0.05),
    OptionSpec("batch_max_events", int, 100, "Most events in one ingest batch.", "BATCH_MAX_EVENTS", 1),
    OptionSpec("batch_flush_ms", int, 500, "Longest wait (ms) before a partial batch is sent.", "BATCH_FLUSH_MS", 1),
    OptionSpec("buffer_max_events", int, 10_000, "Events kept in memory while the API is unreachable; beyond it they are dropped and counted.", minimum=1),
    OptionSpec("throttle_per_window", int, 300, "Events shipped per throttle window; excess dropped and counted.", minimum=1),
    OptionSpec("throttle_window_sec", float, 60.0, "Length of the throttle window in seconds.", minimum=0.05),
    OptionSpec("config_refresh_sec", float, 60.0, "Seconds between fetches of the project config.", minimum=0.05),
    OptionSpec("tool_domains", list, [], "Tool domain, added to the project's list (repeatable).", metavar="DOMAIN"),
    OptionSpec("internal_suffixes", list, [], "Internal domain suffix, added to the project's list (repeatable).", metavar="SUFFIX"),
    OptionSpec("sink_domains", list, [DEFAULT_SINK], "Sink domain answered locally, added to the project's list (repeatable).", metavar="DOMAIN"),
    OptionSpec("sensitive_paths", list, [], "Sensitive path pattern such as /admin, added to the project's list (repeatable).", metavar="PATTERN"),
    OptionSpec("connect_timeout", float, 10.0, "Seconds to open an upstream connection (DNS + TCP).", minimum=0.01),
    OptionSpec("dns_cache_sec", float, 10.0, "Seconds a host name's resolved addresses are reused for new upstream connections; 0 resolves every time.", minimum=0.0),
    OptionSpec("upstream_timeout", float, 60.0, "Seconds without upstream bytes before answering 504.", minimum=0.01),
    OptionSpec("client_idle_timeout", float, 75.0, "Seconds an idle client keep-alive connection stays open.", minimum=0.01),
    OptionSpec("shutdown_timeout", float, 10.0, "Seconds to flush buffered events on SIGTERM/SIGINT.", minimum=0.0),
    OptionSpec("preview_bytes", int, 8192, "Body bytes kept per direction for detection and the redacted preview.", minimum=0),
    OptionSpec("log_level", str, "info", "Log level: debug, info, warning or error."),
)  # fmt: skip

_BY_NAME = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True, slots=True)
class SidecarOptions:
    listen: str = "127.0.0.1:8080"
    ingest_url: str | None = None
    token: str | None = field(default=None, repr=False)
    project_id: str | None = None
    heartbeat_interval: float = 15.0
    batch_max_events: int = 100
    batch_flush_ms: int = 500
    buffer_max_events: int = 10_000
    throttle_per_window: int = 300
    throttle_window_sec: float = 60.0
    config_refresh_sec: float = 60.0
    tool_domains: tuple[str, ...] = ()
    internal_suffixes: tuple[str, ...] = ()
    sink_domains: tuple[str, ...] = (DEFAULT_SINK,)
    sensitive_paths: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    dns_cache_sec: float = 10.0
    upstream_timeout: float = 60.0
    client_idle_timeout: float = 75.0
    shutdown_timeout: float = 10.0
    preview_bytes: int = 8192
    log_level: str = "info"

    @property
    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)

    @property
    def ships(self) -> bool:
        return bool(self.ingest_url and self.token)


SIDECAR_DESCRIPTION = (
    "Forward proxy that records what your agent does on the network "
    "(HTTP forwarded, HTTPS tunnelled without decryption) and ships redacted events."
)


def build_parser(
    specs: Sequence[OptionSpec] = SPECS,
    *,
    prog: str = "cogumi sidecar",
    description: str = SIDECAR_DESCRIPTION,
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description, argument_default=argparse.SUPPRESS
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file with any of the options below.")
    for spec in specs:
        env = f" [env {spec.env}]" if spec.env else ""
        default = f" (default: {spec.default})" if spec.default not in (None, []) else ""
        if spec.kind is list:
            parser.add_argument(
                spec.flag,
                dest=spec.name,
                action="append",
                metavar=spec.metavar,
                help=spec.help + default,
            )
        else:
            parser.add_argument(spec.flag, dest=spec.name, metavar=spec.metavar, help=spec.help + default + env)  # fmt: skip
    return parser


def _convert(spec: OptionSpec, value: Any, source: str) -> Any:
    where = f"{spec.flag} ({source})"
    if spec.kind is list:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise OptionsError(f"{where}: expected a list of strings")
        return tuple(i.strip() for i in items if i.strip())
    try:
        converted = spec.kind(value)
    except (TypeError, ValueError) as exc:
        raise OptionsError(f"{where}: expected {spec.kind.__name__}, got {value!r}") from exc
    if spec.minimum is not None and converted < spec.minimum:
        raise OptionsError(f"{where}: must be at least {spec.minimum}")
    if spec.name == "ingest_url":
        return _api_base(converted, where)
    return converted


def _api_base(url: str, where: str) -> str:
    """The API's base URL without trailing slashes (``https://host/`` would send every
    batch to ``//api/…``, a 404); anything but an http(s) URL with a host is refused
    at start rather than failing every batch later."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:  # fmt: skip
        raise OptionsError(
            f"{where}: expected the API's base URL, such as https://cogumi.example.com, got {url!r}"
        )
    return text.rstrip("/")


def _file_values(path: Path, specs: Sequence[OptionSpec]) -> dict[str, Any]:
    """YAML keys may be option names (ingest_url), flags (ingest-url) or env names."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise OptionsError(f"--config {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise OptionsError(f"--config {path}: expected a mapping of option names to values")
    aliases = {spec.env.lower(): spec.name for spec in specs if spec.env}
    known = {spec.name for spec in specs}
    values: dict[str, Any] = {}
    for key, value in loaded.items():
        name = str(key).lower().replace("-", "_")
        name = aliases.get(name, name)
        if name not in known:
            raise OptionsError(f"--config {path}: unknown option {key!r}")
        values[name] = value
    return values


def merge(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: str | None = None,
    specs: Sequence[OptionSpec] = SPECS,
) -> dict[str, Any]:
    """The values given for ``specs``, converted; for each the highest-precedence source
    (flag > env > file) wins. Options nobody gave are absent (their default applies)."""
    by_name = {spec.name: spec for spec in specs}
    merged: dict[str, Any] = {}
    sources: list[tuple[str, Mapping[str, Any]]] = []
    if config_file:
        sources.append((f"file {config_file}", _file_values(Path(config_file), specs)))
    env_values = {s.name: env[s.env] for s in specs if s.env and env.get(s.env, "") != ""}
    sources += [("env", env_values), ("flag", flags)]
    for source, values in sources:
        for name, value in values.items():
            if value is not None and name in by_name:
                merged[name] = _convert(by_name[name], value, source)
    return merged


def resolve(
    flags: Mapping[str, Any], env: Mapping[str, str], config_file: str | None = None
) -> SidecarOptions:
    """Merge the three sources into the sidecar's options."""
    options = SidecarOptions(**merge(flags, env, config_file))
    check_listen(options.listen)
    return options


def check_listen(listen: str, flag: str = "--listen") -> None:
    _, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise OptionsError(f"{flag}: expected HOST:PORT, got {listen!r}")


def from_argv(argv: Sequence[str], env: Mapping[str, str]) -> SidecarOptions:
    namespace = vars(build_parser().parse_args(list(argv)))
    config_file = namespace.pop("config", None)
    return resolve(namespace, env, config_file)


def documented_names() -> list[str]:
    """Every option name, for the docs test."""
    return [spec.name for spec in SPECS]


def replace(options: SidecarOptions, **changes: Any) -> SidecarOptions:
    return dataclasses.replace(options, **changes)
