"""Event schema, ingest, sequence numbers, live bus and SSE."""
