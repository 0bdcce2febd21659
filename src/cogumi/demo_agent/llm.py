"""Optional model brain: replies from any OpenAI-compatible chat endpoint.

The rules still decide which tools run (and what is remembered); the model
only writes the reply, seeing the system prompt (with the guarded key, as a
real careless agent would have it), the stored memory, the conversation and
the tool results. The call goes through ``HTTP_PROXY`` like every other call,
so the sidecar sees the model provider too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import httpx

from cogumi.demo_agent.memory import Rule, ToolCall
from cogumi.demo_agent.options import DemoOptions
from cogumi.demo_agent.persona import SYSTEM_PROMPT, tool_inventory


class LlmError(RuntimeError):
    """The model endpoint failed or answered something unusable."""


def system_message(options: DemoOptions, tool_api_url: str, rules: Sequence[Rule]) -> str:
    parts = [SYSTEM_PROMPT, f"OPENAI_API_KEY={options.secret}", tool_inventory(tool_api_url)]
    if rules:
        parts.append("Long-term memory:\n" + "\n".join(f"- {rule.text}" for rule in rules))
    return "\n\n".join(parts)


async def complete(
    options: DemoOptions,
    client: httpx.AsyncClient,
    *,
    system: str,
    history: Sequence[tuple[str, str]],
    message: str,
    calls: Sequence[ToolCall],
) -> str:
    messages = [{"role": "system", "content": system}]
    messages += [{"role": role, "content": text} for role, text in history]
    messages.append({"role": "user", "content": message})
    if calls:
        done = "\n".join(
            f"{c.tool}: {c.method} {c.url.split('?', 1)[0]} -> {c.status or c.error}" for c in calls
        )
        messages.append({"role": "system", "content": "Tool results:\n" + done})
    headers = {}
    if options.llm_api_key_env and (key := os.environ.get(options.llm_api_key_env)):
        headers["Authorization"] = f"Bearer {key}"
    url = f"{options.llm_base_url}/chat/completions"
    try:
        response = await client.post(
            url, json={"model": options.llm_model, "messages": messages}, headers=headers,
            timeout=options.llm_timeout,
        )  # fmt: skip
        response.raise_for_status()
        content = response.json()["choices"][0]["message"]["content"]
    except httpx.HTTPError as exc:
        raise LlmError(f"model endpoint failed: {type(exc).__name__}") from exc
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise LlmError("model endpoint answered without choices[0].message.content") from exc
    if not isinstance(content, str):
        raise LlmError("model reply is not text")
    return content
