"""Imports every area's tables so ``Base.metadata`` is complete (Alembic, tests)."""

from cogumi.projects import models as projects_models
from cogumi.tenancy import models as tenancy_models

__all__ = ["projects_models", "tenancy_models"]
