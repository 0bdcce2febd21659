"""One typed settings object for every process.

Every setting is read from the environment with the ``COGUMI_`` prefix (or a
``.env`` file in the working directory). Nothing reads the environment at
import time: callers build a :class:`Settings` and pass it explicitly.
``docs/settings.md`` lists every field; a test keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Mode = Literal["embedded", "hosted"]


class Settings(BaseSettings):
    """Settings shared by ``serve``, ``worker`` and the CLI commands that touch the DB."""

    model_config = SettingsConfigDict(
        env_prefix="COGUMI_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    mode: Mode = Field(
        default="embedded",
        description="`embedded` (one machine, SQLite, in-process queue) or `hosted` "
        "(multi-tenant deployment; stricter defaults such as refusing private targets).",
    )
    data_dir: Path = Field(
        default=Path(".data"),
        description="Directory for the embedded SQLite database and other local state.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL. Unset: SQLite at `<data_dir>/cogumi.db`. "
        "PostgreSQL: `postgresql+asyncpg://user@host:5432/db`.",
    )
    database_pool_size: int = Field(
        default=5,
        ge=1,
        description="PostgreSQL connections each process keeps open. Every `serve` worker "
        "and every `worker` has its own pool: size PostgreSQL's `max_connections` for "
        "processes x (pool size + overflow), plus, per `serve` process, its ingest "
        "writer's connections (as many as this, at most 8). Ignored on SQLite.",
    )
    database_max_overflow: int = Field(
        default=10,
        ge=0,
        description="Extra PostgreSQL connections a process may open at a burst, closed "
        "when returned. Ignored on SQLite.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL for shared rate limits, queue and live bus in scale-out mode.",
    )
    redis_key_prefix: str = Field(
        default="cogumi:",
        description="Prefix of every Redis key this deployment writes (lets several "
        "deployments share one Redis).",
    )
    host: str = Field(default="127.0.0.1", description="Address `cogumi serve` binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `cogumi serve` binds to.")
    serve_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes `cogumi serve` runs on its port (also `--workers`). More than "
        "one needs `COGUMI_REDIS_URL`: rate limits, the live bus and the run queue must be "
        "shared, and campaigns then run in `cogumi worker` processes.",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL users reach the product at (used in invitation links and "
        "snippets). Unset: `http://<host>:<port>`.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key for CSRF tokens and OIDC state. Unset: generated once and kept in "
        "`<data_dir>/secret_key`. Set it explicitly when several API processes run.",
    )
    cookie_secure: bool = Field(
        default=False,
        description="Mark the session cookie `Secure` (turn on whenever served over HTTPS).",
    )
    session_ttl_hours: int = Field(
        default=24 * 14, ge=1, description="Lifetime of a login session, in hours."
    )
    invitation_ttl_hours: int = Field(
        default=72, ge=1, description="How long an invitation link stays valid, in hours."
    )
    login_rate_limit: int = Field(
        default=10,
        ge=1,
        description="Login or register attempts allowed per client address and per email "
        "within `login_rate_window_sec`.",
    )
    login_rate_window_sec: int = Field(
        default=60, ge=1, description="Window of the login/register rate limit, in seconds."
    )
    ingest_rate_limit_per_min: int = Field(
        default=300,
        ge=1,
        description="Events one sidecar token may ingest per minute; a batch that goes over "
        "is refused with 429 and `Retry-After` (the sidecar retries it).",
    )
    allow_private_targets: bool | None = Field(
        default=None,
        description="Allow agent endpoints on loopback and private ranges. Unset: on in "
        "embedded mode, off in hosted mode. Link-local and cloud-metadata addresses are "
        "always refused.",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for invitation mail.")
    smtp_port: int = Field(default=587, description="SMTP port.")
    smtp_user: str | None = Field(default=None, description="SMTP user name.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(
        default="cogumi@localhost", description="Sender address of invitation mail."
    )
    smtp_starttls: bool = Field(default=True, description="Use STARTTLS with the SMTP server.")
    oidc_client_id: str | None = Field(
        default=None, description="Google (or other OIDC) client id; sign-in is off unless set."
    )
    oidc_client_secret: SecretStr | None = Field(default=None, description="OIDC client secret.")
    oidc_discovery_url: str = Field(
        default="https://accounts.google.com/.well-known/openid-configuration",
        description="OIDC discovery document of the identity provider.",
    )
    request_timeout_sec: float = Field(
        default=10.0, gt=0, description="Timeout of outbound calls such as endpoint validation."
    )
    max_request_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest JSON body accepted by the API."
    )
    run_duration_cap_sec: int = Field(
        default=900,
        ge=10,
        description="Longest a campaign may run, in seconds; past it the run stops at the "
        "next step and ends `failed` with reason `duration cap reached`.",
    )
    run_lease_sec: int = Field(
        default=60,
        ge=2,
        description="Lease a worker holds on a running campaign, renewed every third of it; "
        "when it lapses the worker is presumed dead and the run is retried or failed.",
    )
    run_max_attempts: int = Field(
        default=3,
        ge=1,
        description="How many times a campaign is started before a lost worker fails it.",
    )
    run_reaper_interval_sec: float = Field(
        default=10.0,
        gt=0,
        description="How often every worker (and `serve`) looks for runs with a lapsed lease "
        "or a queued job that was never picked up.",
    )
    judge_enabled: bool = Field(
        default=False,
        description="Ask an LLM judge (any OpenAI-compatible chat endpoint) for a second "
        "opinion on whether agent replies are refusals. It can only raise a verdict's "
        "confidence or flag it for review, never change it; it sees redacted reply text only.",
    )
    judge_base_url: str = Field(
        default="",
        description="Base URL of the judge's OpenAI-compatible API (it posts to "
        "`<base>/chat/completions`), e.g. `https://api.openai.com/v1`.",
    )
    judge_model: str = Field(default="", description="Model name sent to the judge endpoint.")
    judge_api_key: SecretStr | None = Field(
        default=None, description="Bearer key for the judge endpoint (unset: no Authorization)."
    )
    judge_timeout_sec: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait for one judge answer; past it the heuristics decide alone "
        "and the reason is recorded.",
    )
    judge_max_calls_per_run: int = Field(
        default=200,
        ge=1,
        description="Most judge calls one campaign makes (identical replies are asked once).",
    )
    webhook_max_attempts: int = Field(
        default=6,
        ge=1,
        le=20,
        description="Attempts per webhook delivery (the first included) before it is marked "
        "`failed` in the delivery log.",
    )
    webhook_retry_base_sec: float = Field(
        default=30.0,
        gt=0,
        description="Delay before the first webhook retry; each later retry waits twice as long "
        "(30 s, 1 min, 2 min, 4 min, 8 min with the defaults).",
    )
    webhook_timeout_sec: float = Field(
        default=10.0, gt=0, description="Timeout of one webhook delivery attempt, in seconds."
    )
    webhook_sweep_interval_sec: float = Field(
        default=5.0,
        gt=0,
        description="How often `serve` and `cogumi worker` look for due webhook deliveries "
        "they were not woken for (retries, deliveries another process wrote).",
    )
    webhook_log_retention_days: int = Field(
        default=30, ge=1, description="Days a finished webhook delivery stays in the delivery log."
    )
    log_level: str = Field(default="INFO", description="Python log level.")
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="`json`: one JSON object per log line with the request id (no secrets); "
        "`text`: plain lines for a terminal.",
    )
    quota_projects: int = Field(
        default=5, ge=1, description="Default most projects per organisation."
    )
    quota_runs_per_month: int = Field(
        default=100, ge=1, description="Default most runs an organisation may start per month."
    )
    quota_runs_per_day_per_project: int = Field(
        default=10, ge=1, description="Default most runs one project may start per day (UTC)."
    )
    quota_events_per_run: int = Field(
        default=10_000,
        ge=10,
        description="Default most events one run may hold; past it the run stops as "
        "`stopped_quota`.",
    )
    quota_storage_bytes: int = Field(
        default=1_000_000_000,
        ge=1,
        description="Default estimated storage an organisation may use, in bytes (1 GB).",
    )
    retention_interval_sec: float = Field(
        default=3600.0,
        ge=0,
        description="How often `serve` and `worker` run the retention cleanup; 0 turns the "
        "schedule off (`POST /api/cron/cleanup` still works).",
    )
    retention_archive_dir: Path | None = Field(
        default=None,
        description="When set, every run is written there as a JSON evidence bundle before "
        "retention deletes it (`<dir>/<org>/<project>/<run>.json`).",
    )
    retention_archive_s3_bucket: str | None = Field(
        default=None,
        description="When set, every run is written to this S3 (or S3-compatible) bucket as a "
        "JSON evidence bundle before retention deletes it "
        "(`<prefix><org>/<project>/<run>.json`). Needs the `s3` extra: "
        "`pip install 'cogumi[s3]'`.",
    )
    retention_archive_s3_prefix: str = Field(
        default="",
        description="Key prefix of archived bundles in the bucket (a trailing `/` is added).",
    )
    retention_archive_s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible store (MinIO, Ceph, R2...); unset: AWS S3. "
        "With an endpoint, path-style addressing is used.",
    )
    retention_archive_s3_region: str | None = Field(
        default=None, description="Region of the archive bucket (unset: the SDK's default)."
    )
    retention_archive_s3_access_key_id: str | None = Field(
        default=None,
        description="Access key id for the archive bucket; unset: the SDK's usual sources "
        "(`AWS_*` variables, shared config, instance role).",
    )
    retention_archive_s3_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret access key that goes with the access key id."
    )
    cron_secret: SecretStr | None = Field(
        default=None,
        description="Secret a scheduler sends as `X-Cron-Secret` to `POST /api/cron/cleanup`; "
        "unset: that route answers 404.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, `/metrics` (of `serve` and of `cogumi worker`) requires "
        "`Authorization: Bearer <token>`.",
    )
    worker_metrics_listen: str | None = Field(
        default=None,
        description="`HOST:PORT` where `cogumi worker` serves Prometheus `/metrics` (also "
        "`--metrics-listen`); unset: the worker serves no HTTP at all.",
    )
    shutdown_grace_sec: int = Field(
        default=30,
        ge=1,
        description="On SIGTERM, how long `serve` lets in-flight requests finish before closing.",
    )

    @model_validator(mode="after")
    def _judge_complete(self) -> Settings:
        if self.judge_enabled and not (self.judge_base_url and self.judge_model):
            raise ValueError(
                "COGUMI_JUDGE_ENABLED needs COGUMI_JUDGE_BASE_URL and COGUMI_JUDGE_MODEL"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        """Accept plain ``postgresql://`` and ``sqlite://`` URLs and pick the async driver."""
        if value is None:
            return None
        if value.startswith(("postgres://", "postgresql://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value.split(":///", 1)[1]
        return value

    @property
    def effective_database_url(self) -> str:
        """The database URL actually used."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'cogumi.db').resolve()}"

    def engine_options(self) -> dict[str, int]:
        """Connection-pool options for :func:`cogumi.db.engine.make_engine`."""
        if self.is_sqlite:
            return {}
        return {"pool_size": self.database_pool_size, "max_overflow": self.database_max_overflow}

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def private_targets_allowed(self) -> bool:
        if self.allow_private_targets is not None:
            return self.allow_private_targets
        return self.mode == "embedded"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_client_id and self.oidc_client_secret)

    def resolved_secret_key(self) -> str:
        """The configured key, or one generated once and kept in the data directory."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        import secrets

        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(key)
        return key
