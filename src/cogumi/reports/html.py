"""The run report as one self-contained HTML page, rendered from its Markdown.

markdown-it-py runs in CommonMark mode with tables and ``html=False``: any raw
HTML that reaches the Markdown (a hostile agent reply) comes out as text, and
its link validator refuses ``javascript:``/``data:`` URLs. Images are not
rendered at all (``![alt](url)`` stays a plain link): a report is read offline
and must not fetch anything, and a custom technique's remediation is Markdown
written by an org member, not by us. The page carries
its own CSS (no CDN: reports are read offline) with print rules so it prints
cleanly to PDF.
"""

from __future__ import annotations

from html import escape

from markdown_it import MarkdownIt

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1f24;
       max-width: 60rem; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.7rem; border-bottom: 3px solid #b42318; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #f6f8fa; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .85em;
       background: #f6f8fa; padding: 0 .2em; overflow-wrap: anywhere; }
ol li, ul li { margin: .2rem 0; }
@media print {
  body { margin: 0; max-width: none; font-size: 11pt; }
  h1, h2, h3 { break-after: avoid; }
  h3 { break-before: auto; }
  table, tr, li { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
  @page { margin: 18mm 16mm; }
}
"""


def _renderer() -> MarkdownIt:
    return (
        MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").disable("image")
    )


def render(markdown_text: str, *, title: str) -> str:
    """A complete HTML document of the report."""
    body = _renderer().render(markdown_text)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )
