"""Operations: metrics, structured logs with request ids, readiness."""
