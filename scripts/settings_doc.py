"""Print docs/settings.md from the Settings class (run: python scripts/settings_doc.py > docs/settings.md)."""

from __future__ import annotations

from cogumi.config import Settings


def render() -> str:
    lines = [
        "# Settings",
        "",
        "Every process reads these from the environment (or a `.env` file in its",
        "working directory). Generated from `cogumi.config.Settings` by",
        "`python scripts/settings_doc.py > docs/settings.md`; a test keeps it current.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else "empty" if default == "" else f"`{default}`"
        if field.json_schema_extra is None and name.endswith(("password", "secret", "secret_key")):
            shown = "unset"
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `COGUMI_{name.upper()}` | {shown} | {description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
