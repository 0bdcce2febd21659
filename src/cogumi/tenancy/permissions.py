"""What each role may do, in one table (CONTRACTS.md "Tenancy and access").

OWNER: the org, members, tokens, retention, quotas. ADMIN: projects, runs,
settings, tokens. MEMBER: start runs, triage, view findings and reports.
VIEWER: read only. Routes ask for a permission, never for a role.
"""

from __future__ import annotations

import enum

from cogumi.tenancy.models import Role


class Permission(enum.StrEnum):
    READ = "read"  # projects, runs, findings, reports, members list
    ORG_MANAGE = "org.manage"  # rename org, retention, quotas
    MEMBERS_MANAGE = "members.manage"  # invite, change role, remove
    TOKENS_MANAGE = "tokens.manage"  # sidecar tokens and API keys
    PROJECTS_WRITE = "projects.write"  # create/update/delete, prod override, settings
    RUNS_START = "runs.start"  # start and cancel runs
    FINDINGS_TRIAGE = "findings.triage"
    AUDIT_READ = "audit.read"


_ALL = frozenset(Permission)

GRANTS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: _ALL,
    Role.ADMIN: frozenset(
        {
            Permission.READ,
            Permission.TOKENS_MANAGE,
            Permission.PROJECTS_WRITE,
            Permission.RUNS_START,
            Permission.FINDINGS_TRIAGE,
            Permission.AUDIT_READ,
        }
    ),
    Role.MEMBER: frozenset({Permission.READ, Permission.RUNS_START, Permission.FINDINGS_TRIAGE}),
    Role.VIEWER: frozenset({Permission.READ}),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in GRANTS[role]
