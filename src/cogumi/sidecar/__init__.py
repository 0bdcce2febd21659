"""The sidecar: a forward proxy customers run beside their agent.

It forwards plain HTTP and tunnels HTTPS (CONNECT, never decrypted), turns each
exchange into one redacted event (``core``), and ships the events in batches to
the ingest API (``shipper``). The I/O shell (``proxy``) stays thin so the event
logic is tested without sockets. Nothing here imports the database stack or the
web framework: the sidecar is a small process of its own.
"""
