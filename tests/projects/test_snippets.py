"""Connect snippets: they parse, the sidecar accepts them, and they carry the project's values."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cogumi.sidecar.options import from_argv, resolve
from cogumi.tenancy.models import Role
from tests.factories import Accounts
from tests.projects.helpers import create_project

SIDECAR_ENV = {
    "SIDECAR_TOKEN",
    "PROJECT_ID",
    "INGEST_URL",
    "HEARTBEAT_INTERVAL_SEC",
    "BATCH_MAX_EVENTS",
    "BATCH_FLUSH_MS",
}


async def _snippets(accounts: Accounts) -> tuple[dict[str, Any], dict[str, Any]]:
    owner = await accounts.signup()
    project = await create_project(
        owner.client,
        name="Support Bot: prod-like #1",
        sink_domains=["attacker-sink.local", "exfil.example"],
        tool_domains=["api.tools.example.com"],
        internal_suffixes=["corp.internal"],
        sensitive_paths=["/admin"],
    )
    response = await owner.client.get(f"/api/projects/{project['id']}/connect-snippets")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["project_id"] == project["id"]
    assert body["ingest_url"] == "http://testserver"
    assert body["token_placeholder"] == "<SIDECAR_TOKEN>"
    return project, body["snippets"]


async def test_all_snippets_present_and_token_only_as_placeholder(accounts: Accounts) -> None:
    owner = await accounts.signup()
    project = await create_project(owner.client)
    token = (
        await owner.client.post(f"/api/projects/{project['id']}/sidecar-tokens", json={"name": "t"})
    ).json()
    response = await owner.client.get(f"/api/projects/{project['id']}/connect-snippets")
    snippets = response.json()["snippets"]
    assert set(snippets) == {
        "docker_compose",
        "kubernetes",
        "env",
        "sidecar_yaml",
        "fastapi",
        "express",
    }
    for name, snippet in snippets.items():
        assert snippet["content"] and snippet["filename"] and snippet["language"], name
        assert token["token"] not in snippet["content"]
        assert token["prefix"] not in snippet["content"]
        assert project["id"] in snippet["content"], name
    assert "<SIDECAR_TOKEN>" in response.text


async def test_sidecar_yaml_is_accepted_by_the_sidecar(accounts: Accounts, tmp_path: Path) -> None:
    project, snippets = await _snippets(accounts)
    content = snippets["sidecar_yaml"]["content"]
    data = yaml.safe_load(content)
    assert data["project_id"] == project["id"] and data["token"] == "<SIDECAR_TOKEN>"
    path = tmp_path / "sidecar.yaml"
    path.write_text(content)
    options = resolve({}, {}, str(path))
    assert options.project_id == project["id"]
    assert options.ingest_url == "http://testserver"
    assert options.sink_domains == ("attacker-sink.local", "exfil.example")
    assert options.tool_domains == ("api.tools.example.com",)
    assert options.internal_suffixes == ("corp.internal",)
    assert options.sensitive_paths == ("/admin",)


async def test_env_snippet_is_accepted_by_the_sidecar(accounts: Accounts) -> None:
    project, snippets = await _snippets(accounts)
    pairs = [
        line.split("=", 1)
        for line in snippets["env"]["content"].splitlines()
        if line and not line.startswith("#")
    ]
    env = dict(pairs)
    assert set(env) >= SIDECAR_ENV | {"HTTP_PROXY", "HTTPS_PROXY"}
    options = resolve({}, env)
    assert options.project_id == project["id"] and options.token == "<SIDECAR_TOKEN>"
    assert options.heartbeat_interval == 15 and options.batch_max_events == 100
    assert env["HTTP_PROXY"] == env["HTTPS_PROXY"] == "http://127.0.0.1:8080"


async def test_compose_parses_and_wires_the_agent_through_the_sidecar(accounts: Accounts) -> None:
    project, snippets = await _snippets(accounts)
    compose = yaml.safe_load(snippets["docker_compose"]["content"])
    sidecar = compose["services"]["cogumi-sidecar"]
    agent = compose["services"]["agent"]
    assert set(sidecar["environment"]) == SIDECAR_ENV
    assert sidecar["environment"]["PROJECT_ID"] == project["id"]
    assert agent["environment"]["HTTPS_PROXY"] == "http://cogumi-sidecar:8080"
    entry = sidecar["entrypoint"]
    assert entry[:2] == ["cogumi", "sidecar"]
    options = from_argv(entry[2:], sidecar["environment"])
    assert options.listen_address == ("0.0.0.0", 8080)


async def test_kubernetes_manifest_parses(accounts: Accounts) -> None:
    project, snippets = await _snippets(accounts)
    secret, deployment = list(yaml.safe_load_all(snippets["kubernetes"]["content"]))
    assert secret["kind"] == "Secret"
    assert secret["stringData"] == {"SIDECAR_TOKEN": "<SIDECAR_TOKEN>"}
    assert deployment["kind"] == "Deployment"
    assert deployment["metadata"]["name"] == "support-bot-prod-like-1"
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    sidecar_env = {e["name"]: e for e in containers["cogumi-sidecar"]["env"]}
    assert set(sidecar_env) == SIDECAR_ENV
    assert sidecar_env["PROJECT_ID"]["value"] == project["id"]
    assert (
        sidecar_env["SIDECAR_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
        == (secret["metadata"]["name"])
    )
    agent_env = {e["name"]: e["value"] for e in containers["agent"]["env"]}
    assert agent_env["HTTP_PROXY"] == "http://127.0.0.1:8080"


async def test_fastapi_example_compiles_and_follows_the_contract(
    accounts: Accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, snippets = await _snippets(accounts)
    source = snippets["fastapi"]["content"]
    compile(source, "agent_endpoint.py", "exec")
    path = tmp_path / "agent_endpoint_example.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("agent_endpoint_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "agent_endpoint_example", module)
    spec.loader.exec_module(module)
    namespace = vars(module)
    assert namespace["PROJECT_ID"] == project["id"]

    async def echo(session_id: str, message: str) -> str:
        return f"echo {message}"

    namespace["run_agent"] = echo
    transport = httpx.ASGITransport(app=namespace["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        assert (await client.post("/health")).status_code == 200
        reply = await client.post(
            "/message",
            json={
                "run_id": "r1",
                "session_id": "s1",
                "actor": "adversary",
                "message": "hello",
                "metadata": {"script_id": "S1", "step": 1, "attack_style": "incident_urgent"},
            },
        )
    assert reply.status_code == 200
    assert reply.json() == {
        "message": "echo hello",
        "done": False,
        "metadata": {"project_id": project["id"]},
    }


async def test_express_example_is_valid_javascript(accounts: Accounts, tmp_path: Path) -> None:
    project, snippets = await _snippets(accounts)
    source = snippets["express"]["content"]
    assert f'const PROJECT_ID = "{project["id"]}";' in source
    assert 'app.post("/message"' in source and 'app.post("/health"' in source
    node = shutil.which("node")
    assert node is not None, "node is needed to check the Express example"
    path = tmp_path / "agent-endpoint.js"
    path.write_text(source)
    checked = subprocess.run(
        [node, "--check", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


async def test_viewer_may_read_snippets_stranger_may_not(accounts: Accounts) -> None:
    team = await accounts.org_with_roles()
    stranger = await accounts.signup()
    project = await create_project(team[Role.OWNER].client)
    url = f"/api/projects/{project['id']}/connect-snippets"
    assert (await team[Role.VIEWER].client.get(url)).status_code == 200
    assert (await stranger.client.get(url)).status_code == 404
