"""Every setting is documented, secrets stay out of repr, URLs get their async driver."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cogumi.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_has_help_and_docs_are_current() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import settings_doc
    finally:
        sys.path.pop(0)
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"
    documented = (ROOT / "docs" / "settings.md").read_text()
    assert documented == settings_doc.render(), (
        "run: python scripts/settings_doc.py > docs/settings.md"
    )


def test_secrets_are_masked_in_repr() -> None:
    settings = Settings(_env_file=None, secret_key="very-secret-value", smtp_password="smtp-pass")  # type: ignore[call-arg]
    assert "very-secret-value" not in repr(settings)
    assert "smtp-pass" not in repr(settings)


def test_database_url_gets_async_driver() -> None:
    pg = Settings(_env_file=None, database_url="postgresql://u@h:5432/db")  # type: ignore[call-arg]
    assert pg.effective_database_url == "postgresql+asyncpg://u@h:5432/db"
    assert not pg.is_sqlite
    default = Settings(_env_file=None, data_dir=Path("/tmp/x"))  # type: ignore[call-arg]
    assert default.effective_database_url == "sqlite+aiosqlite:////tmp/x/cogumi.db"


def test_private_targets_follow_mode() -> None:
    assert Settings(_env_file=None).private_targets_allowed is True  # type: ignore[call-arg]
    assert Settings(_env_file=None, mode="hosted").private_targets_allowed is False  # type: ignore[call-arg]
    assert (
        Settings(_env_file=None, mode="hosted", allow_private_targets=True).private_targets_allowed
        is True
    )  # type: ignore[call-arg]


def test_postgres_pool_is_sized_by_settings() -> None:
    from cogumi.db.engine import make_engine

    pg = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url="postgresql://u@h:5432/db",
        database_pool_size=3,
        database_max_overflow=2,
    )
    engine = make_engine(pg.effective_database_url, **pg.engine_options())
    pool = engine.sync_engine.pool
    assert (pool.size(), pool._max_overflow) == (3, 2)  # type: ignore[attr-defined]
    sqlite = Settings(_env_file=None, data_dir=Path("/tmp/x"), database_pool_size=3)  # type: ignore[call-arg]
    assert sqlite.engine_options() == {}


def test_dotenv_in_working_directory_sets_settings_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("COGUMI_PORT", "COGUMI_SECRET_KEY", "COGUMI_MODE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text(
        "COGUMI_PORT=9123\nCOGUMI_SECRET_KEY=from-dotenv\nCOGUMI_MODE=hosted\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    from_file = Settings()
    assert from_file.port == 9123
    assert from_file.mode == "hosted"
    assert from_file.secret_key is not None
    assert from_file.secret_key.get_secret_value() == "from-dotenv"
    monkeypatch.setenv("COGUMI_PORT", "9124")
    monkeypatch.setenv("COGUMI_SECRET_KEY", "from-environment")
    overridden = Settings()
    assert overridden.port == 9124
    assert overridden.secret_key is not None
    assert overridden.secret_key.get_secret_value() == "from-environment"
    assert overridden.mode == "hosted"  # still from .env: only the set variables win
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("COGUMI_PORT")
    assert Settings().port == 8000  # the .env of the working directory only
