"""Options: declared once, flags > env > file, YAML keys by name, flag or env name."""

from __future__ import annotations

from pathlib import Path

import pytest

from cogumi.sidecar.options import SPECS, OptionsError, SidecarOptions, from_argv, resolve


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text(
        "ingest-url: http://file\nSIDECAR_TOKEN: file-token\nbatch_max_events: 7\n"
        "heartbeat_interval: 9\nsink_domains: [a.example, b.example]\n"
    )
    env = {"INGEST_URL": "http://env", "BATCH_MAX_EVENTS": "8", "PROJECT_ID": "p-env"}
    options = from_argv(["--config", str(config), "--batch-max-events", "9",
                         "--tool-domain", "t1.example", "--tool-domain", "t2.example"], env)  # fmt: skip
    assert options.ingest_url == "http://env"
    assert options.token == "file-token"
    assert options.batch_max_events == 9
    assert options.heartbeat_interval == 9.0
    assert options.project_id == "p-env"
    assert options.sink_domains == ("a.example", "b.example")
    assert options.tool_domains == ("t1.example", "t2.example")
    assert options.batch_flush_ms == 500
    assert "file-token" not in repr(options)


def test_defaults_match_the_declarations() -> None:
    defaults = SidecarOptions()
    for spec in SPECS:
        value = getattr(defaults, spec.name)
        assert (list(value) if spec.kind is list else value) == spec.default, spec.name


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [({"batch_max_events": "0"}, {}, "--batch-max-events"),
     ({}, {"BATCH_FLUSH_MS": "soon"}, "--batch-flush-ms (env)"),
     ({"listen": "8080"}, {}, "--listen")],
)  # fmt: skip
def test_bad_values_name_the_option(
    flags: dict[str, str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(OptionsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(flags, env)


def test_the_api_url_loses_its_trailing_slashes_from_every_source(tmp_path: Path) -> None:
    """``https://host/`` as given would send every batch to ``//api/…`` (a 404)."""
    config = tmp_path / "s.yaml"
    config.write_text("INGEST_URL: https://file.example/\n")
    assert from_argv(["--config", str(config)], {}).ingest_url == "https://file.example"
    assert (
        resolve({}, {"INGEST_URL": "http://env.example:8000//"}).ingest_url
        == "http://env.example:8000"
    )
    flags = {"ingest_url": " https://proxy.example/cogumi/ "}  # a path prefix stays
    assert resolve(flags, {}).ingest_url == "https://proxy.example/cogumi"


@pytest.mark.parametrize(
    "url", ["ftp://api.example", "api.example:8000", "http://", "https://api.example/?x=1",
            "http://api.example:port", "https://api.example/#top"],
)  # fmt: skip
def test_an_api_url_that_cannot_work_is_refused_at_start(url: str) -> None:
    with pytest.raises(OptionsError, match=r"--ingest-url \(env\): expected the API's base URL"):
        resolve({}, {"INGEST_URL": url})


def test_unknown_file_keys_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text("ingest_ur: http://typo\n")
    with pytest.raises(OptionsError, match="unknown option 'ingest_ur'"):
        from_argv(["--config", str(config)], {})


def test_every_option_is_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "sidecar.md").read_text()
    for spec in SPECS:
        assert f"`{spec.flag}`" in docs, spec.flag
        if spec.env:
            assert f"`{spec.env}`" in docs, spec.env


def test_the_sidecar_imports_no_database_or_web_stack() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cogumi.cli, cogumi.sidecar.runner; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'sqlalchemy', 'fastapi', 'starlette', 'alembic', 'httpx', 'cogumi'} "
        "and not m.startswith(('cogumi.sidecar', 'cogumi.detect', 'cogumi.cli', 'cogumi.tasks')) "
        "and m != 'cogumi'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
