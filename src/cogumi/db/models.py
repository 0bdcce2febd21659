"""Imports every area's tables so ``Base.metadata`` is complete (Alembic, tests)."""

from cogumi.engine import models as engine_models
from cogumi.events import models as events_models
from cogumi.findings import models as findings_models
from cogumi.projects import models as projects_models
from cogumi.quotas import models as quotas_models
from cogumi.reports import models as reports_models
from cogumi.runs import models as runs_models
from cogumi.saved_prompts import models as saved_prompts_models
from cogumi.tenancy import models as tenancy_models
from cogumi.webhooks import models as webhooks_models

__all__ = [
    "engine_models",
    "events_models",
    "findings_models",
    "projects_models",
    "quotas_models",
    "reports_models",
    "runs_models",
    "saved_prompts_models",
    "tenancy_models",
    "webhooks_models",
]
