"""Signed webhooks: per-org endpoints told about finished runs and new findings."""
