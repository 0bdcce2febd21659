"""Quota API shapes."""

from __future__ import annotations

from pydantic import Field

from cogumi.schemas import Input, Output


class QuotaUsage(Output):
    quota: str = Field(description="Quota name.")
    limit: int = Field(description="The limit in force (the org's override or the default).")
    used: int = Field(description="Current use (for per-project and per-run quotas: the largest).")
    percent: float = Field(description="used / limit, in percent.")
    overridden: bool = Field(description="True when the org has its own limit for this quota.")


class QuotasOut(Output):
    items: list[QuotaUsage]


class QuotasPatch(Input):
    """Send only the quotas to change; ``null`` puts a quota back to the deployment default."""

    projects: int | None = Field(default=None, ge=1, le=100_000)
    runs_per_month: int | None = Field(default=None, ge=1, le=10_000_000)
    runs_per_day_per_project: int | None = Field(default=None, ge=1, le=1_000_000)
    events_per_run: int | None = Field(default=None, ge=10, le=100_000_000)
    storage_bytes: int | None = Field(default=None, ge=1_000_000, le=10**15)


class CleanupOut(Output):
    ran: bool = Field(description="False when another cleanup was already running.")
    orgs: dict[str, dict[str, int]] = Field(
        description="Per organisation id: runs, events, findings and reports deleted, runs "
        "archived, and runs kept because their archive failed (`archive_failed`)."
    )
    totals: dict[str, int]
    problems: list[str] = Field(
        default_factory=list,
        description="Why runs were kept (each archive failure, at most 50); empty when none.",
    )
