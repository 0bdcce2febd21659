"""Findings: proven weaknesses with their chain of evidence, fingerprints and triage."""
