"""The self-hosting kit: compose file, .env.example, Dockerfile and entrypoint.

Docker itself cannot run here, so these check what can be checked without
it: the files parse, every setting they name is real, the entrypoint really
waits, migrates and execs, and the Dockerfile copies files that exist.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from cogumi.config import Settings
from cogumi.db.migrate import current_revision
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
SETTING_NAME = re.compile(r"\bCOGUMI_[A-Z0-9_]+")
INTERPOLATED = re.compile(r"\$\{([A-Z0-9_]+)")


def settings_env_names() -> set[str]:
    return {f"COGUMI_{name.upper()}" for name in Settings.model_fields}


def compose() -> dict[str, object]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def test_compose_parses_with_the_documented_services() -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    assert {"postgres", "redis", "web", "worker", "migrate"} <= set(services)
    for name in ("sidecar", "sink", "demo-agent"):
        assert services[name]["profiles"] == ["customer"]
    assert services["web"]["command"] == ["cogumi", "serve"]
    assert services["worker"]["command"] == ["cogumi", "worker"]
    assert "/api/health/ready" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_every_cogumi_variable_of_the_kit_is_a_real_setting() -> None:
    known = settings_env_names()
    for path in (COMPOSE, ENV_EXAMPLE):
        named = set(SETTING_NAME.findall(path.read_text()))
        assert named, path
        assert named <= known, f"{path.name}: not settings: {sorted(named - known)}"


def test_every_interpolated_variable_is_in_env_example() -> None:
    listed = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    used = set(INTERPOLATED.findall(COMPOSE.read_text()))
    assert used <= listed, sorted(used - listed)


async def test_the_healthcheck_route_answers(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/health/ready")).status_code == 200


def test_dockerfile_is_multi_stage_non_root_and_copies_what_exists() -> None:
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    sources = []
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE):
        sources.extend(line.split()[:-1])
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["cogumi-entrypoint"]' in text
    assert "/dist" in text and "pip install" in text


def test_entrypoint_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(ENTRYPOINT)], check=True)
    assert os.access(ENTRYPOINT, os.X_OK)


def entrypoint_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(COGUMI_DATA_DIR=str(tmp_path / "data"), **extra)
    return env


def test_entrypoint_migrates_sqlite_then_execs_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = f'echo "$$" > {marker}; echo "$COGUMI_DATA_DIR"'
    proc = subprocess.Popen(
        ["bash", str(ENTRYPOINT), "bash", "-c", script],
        env=entrypoint_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "applying migrations" in err
    assert int(marker.read_text()) == proc.pid  # exec'd: the command took the script's PID
    database = tmp_path / "data" / "cogumi.db"
    assert database.exists()
    assert current_revision(f"sqlite+aiosqlite:///{database}") == "0001"
    assert out.strip() == str(tmp_path / "data")


def test_entrypoint_leaves_the_database_alone_for_customer_side_commands(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(ENTRYPOINT), "cogumi", "version"],
        env=entrypoint_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert not (tmp_path / "data").exists()


def test_entrypoint_gives_up_when_the_database_never_answers(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    unreachable = f"postgresql://cogumi@127.0.0.1:{free_port()}/cogumi"
    env = entrypoint_env(tmp_path, COGUMI_DATABASE_URL=unreachable, DB_WAIT_TIMEOUT="3")
    result = subprocess.run(
        ["bash", str(ENTRYPOINT), "touch", str(marker)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "database still unreachable" in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("name", ["docs/deployment.md"])
def test_deployment_guide_links_settings_and_covers_operations(name: str) -> None:
    text = (ROOT / name).read_text()
    assert "settings.md" in text
    for topic in (
        "pg_dump",
        "wal_checkpoint",
        "cogumi migrate",
        "cogumi worker",
        "/api/health/ready",
    ):
        assert topic in text, topic
