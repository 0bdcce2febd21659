"""Projects, sidecar tokens, guardrails, connect snippets, endpoint validation."""
