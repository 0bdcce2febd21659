"""Copy-paste snippets for the connect wizard, filled with one project's values.

Pure functions of the project and the settings. YAML is produced with
``yaml.safe_dump`` from data, never by pasting strings into a template, so a
project name or domain can never break (or inject into) the generated files.
The sidecar token never appears: only :data:`TOKEN_PLACEHOLDER` does, because
the real token was shown once when it was created and is not stored.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from cogumi.config import Settings
from cogumi.projects.models import Project
from cogumi.projects.schemas import Snippet

TOKEN_PLACEHOLDER = "<SIDECAR_TOKEN>"
SIDECAR_IMAGE = "cogumi:latest"
SIDECAR_PORT = 8080
HEARTBEAT_INTERVAL_SEC = 15
BATCH_MAX_EVENTS = 100
BATCH_FLUSH_MS = 500


def slug(name: str) -> str:
    """A Kubernetes/compose-safe name derived from the project name."""
    value = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return value or "agent"


def sidecar_env(project: Project, settings: Settings) -> dict[str, str]:
    """The sidecar's variables, named exactly as the sidecar reads them."""
    return {
        "SIDECAR_TOKEN": TOKEN_PLACEHOLDER,
        "PROJECT_ID": str(project.id),
        "INGEST_URL": settings.base_url,
        "HEARTBEAT_INTERVAL_SEC": str(HEARTBEAT_INTERVAL_SEC),
        "BATCH_MAX_EVENTS": str(BATCH_MAX_EVENTS),
        "BATCH_FLUSH_MS": str(BATCH_FLUSH_MS),
    }


def agent_proxy_env(proxy_host: str) -> dict[str, str]:
    """What makes the agent send its outbound traffic through the sidecar."""
    url = f"http://{proxy_host}:{SIDECAR_PORT}"
    return {"HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url}


def _yaml(data: Any, header: str) -> str:
    return f"# {header}\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def env_snippet(project: Project, settings: Settings) -> Snippet:
    lines = [f"# Sidecar for project {project.id}"]
    lines += [f"{k}={v}" for k, v in sidecar_env(project, settings).items()]
    lines += ["", "# Agent: send outbound traffic through the sidecar"]
    lines += [f"{k}={v}" for k, v in agent_proxy_env("127.0.0.1").items()]
    return Snippet(
        title="Environment variables",
        language="shell",
        filename="cogumi.env",
        content="\n".join(lines) + "\n",
    )


def sidecar_yaml_snippet(project: Project, settings: Settings) -> Snippet:
    config = {
        "listen": f"127.0.0.1:{SIDECAR_PORT}",
        "token": TOKEN_PLACEHOLDER,
        "project_id": str(project.id),
        "ingest_url": settings.base_url,
        "heartbeat_interval": HEARTBEAT_INTERVAL_SEC,
        "batch_max_events": BATCH_MAX_EVENTS,
        "batch_flush_ms": BATCH_FLUSH_MS,
        "sink_domains": list(project.sink_domains),
        "tool_domains": list(project.tool_domains),
        "internal_suffixes": list(project.internal_suffixes),
        "sensitive_paths": list(project.sensitive_paths),
    }
    header = "cogumi sidecar --config sidecar.yaml  (the lists are refreshed from the server)"
    return Snippet(
        title="Sidecar YAML",
        language="yaml",
        filename="sidecar.yaml",
        content=_yaml(config, header),
    )


def compose_snippet(project: Project, settings: Settings) -> Snippet:
    env = sidecar_env(project, settings)
    compose = {
        "services": {
            "cogumi-sidecar": {
                "image": SIDECAR_IMAGE,
                "entrypoint": ["cogumi", "sidecar", "--listen", f"0.0.0.0:{SIDECAR_PORT}"],
                "environment": env,
                "restart": "unless-stopped",
            },
            "agent": {
                "image": "your-agent-image:latest",
                "environment": agent_proxy_env("cogumi-sidecar"),
                "depends_on": ["cogumi-sidecar"],
            },
        }
    }
    return Snippet(
        title="Docker Compose",
        language="yaml",
        filename="docker-compose.yml",
        content=_yaml(compose, f"COGUMI sidecar beside your agent (project {project.id})"),
    )


def _k8s_secret(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-cogumi-sidecar"},
        "type": "Opaque",
        "stringData": {"SIDECAR_TOKEN": TOKEN_PLACEHOLDER},
    }


def _k8s_deployment(name: str, project: Project, settings: Settings) -> dict[str, Any]:
    env = sidecar_env(project, settings)
    secret_ref = {"secretKeyRef": {"name": f"{name}-cogumi-sidecar", "key": "SIDECAR_TOKEN"}}
    sidecar_vars: list[dict[str, Any]] = [{"name": "SIDECAR_TOKEN", "valueFrom": secret_ref}]
    sidecar_vars += [{"name": k, "value": v} for k, v in env.items() if k != "SIDECAR_TOKEN"]
    agent_vars = [{"name": k, "value": v} for k, v in agent_proxy_env("127.0.0.1").items()]
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "agent", "image": "your-agent-image:latest", "env": agent_vars},
                        {
                            "name": "cogumi-sidecar",
                            "image": SIDECAR_IMAGE,
                            "command": [
                                "cogumi",
                                "sidecar",
                                "--listen",
                                f"127.0.0.1:{SIDECAR_PORT}",
                            ],
                            "env": sidecar_vars,
                        },
                    ]
                },
            },
        },
    }


def kubernetes_snippet(project: Project, settings: Settings) -> Snippet:
    name = slug(project.name)
    docs = [_k8s_secret(name), _k8s_deployment(name, project, settings)]
    header = f"COGUMI sidecar in the agent's pod (project {project.id})"
    content = f"# {header}\n" + yaml.safe_dump_all(docs, sort_keys=False)
    return Snippet(
        title="Kubernetes manifest",
        language="yaml",
        filename="cogumi-sidecar.yaml",
        content=content,
    )


_FASTAPI = '''\
"""Agent test endpoint for COGUMI AI Protect (project {project_id}).

Run: uvicorn agent_endpoint:app --port 9000, then set the project's agent test URL.
"""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

PROJECT_ID = {project_id_literal}

app = FastAPI()


class Metadata(BaseModel):
    script_id: str | None = None
    step: int | None = None
    attack_style: str | None = None


class MessageIn(BaseModel):
    run_id: str
    session_id: str
    actor: str = "adversary"
    message: str
    metadata: Metadata = Field(default_factory=Metadata)


class MessageOut(BaseModel):
    message: str
    done: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


async def run_agent(session_id: str, message: str) -> str:
    """Call your agent here; keep one conversation per session_id."""
    raise NotImplementedError("connect your agent")


@app.post("/health")
async def health() -> dict[str, str]:
    return {{"status": "ok"}}


@app.post("/message")
async def message(body: MessageIn) -> MessageOut:
    reply = await run_agent(body.session_id, body.message)
    return MessageOut(message=reply, metadata={{"project_id": PROJECT_ID}})
'''

_EXPRESS = """\
// Agent test endpoint for COGUMI AI Protect (project {project_id}).
// Run: node agent-endpoint.js, then set the project's agent test URL.
const express = require("express");

const PROJECT_ID = {project_id_literal};
const app = express();
app.use(express.json({{ limit: "1mb" }}));

// Call your agent here; keep one conversation per sessionId.
async function runAgent(sessionId, message) {{
  throw new Error("connect your agent");
}}

app.post("/health", (req, res) => res.json({{ status: "ok" }}));

app.post("/message", async (req, res) => {{
  const {{ session_id: sessionId, message }} = req.body || {{}};
  if (typeof sessionId !== "string" || typeof message !== "string") {{
    return res.status(422).json({{ error: "session_id and message are required" }});
  }}
  const reply = await runAgent(sessionId, message);
  res.json({{ message: reply, done: false, metadata: {{ project_id: PROJECT_ID }} }});
}});

app.listen(process.env.PORT || 9000);
"""


def _code_values(project: Project) -> dict[str, str]:
    return {"project_id": str(project.id), "project_id_literal": json.dumps(str(project.id))}


def fastapi_snippet(project: Project) -> Snippet:
    return Snippet(
        title="Agent endpoint (FastAPI)",
        language="python",
        filename="agent_endpoint.py",
        content=_FASTAPI.format(**_code_values(project)),
    )


def express_snippet(project: Project) -> Snippet:
    return Snippet(
        title="Agent endpoint (Express)",
        language="javascript",
        filename="agent-endpoint.js",
        content=_EXPRESS.format(**_code_values(project)),
    )


def connect_snippets(project: Project, settings: Settings) -> dict[str, Snippet]:
    """Every snippet of the wizard, keyed by a stable name."""
    return {
        "docker_compose": compose_snippet(project, settings),
        "kubernetes": kubernetes_snippet(project, settings),
        "env": env_snippet(project, settings),
        "sidecar_yaml": sidecar_yaml_snippet(project, settings),
        "fastapi": fastapi_snippet(project),
        "express": express_snippet(project),
    }
