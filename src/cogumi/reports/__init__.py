"""Reports and exports of a run: Markdown/HTML report, evidence bundle, compare, SARIF, JUnit."""
