"""Projects API (filled in by the projects area)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["projects"])
