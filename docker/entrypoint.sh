#!/usr/bin/env bash
# Container entrypoint: wait for the database, apply migrations, then exec the
# command (so it runs as PID 1 and receives SIGTERM directly).
#
# The customer-side programs (cogumi sidecar, sink, demo-agent) never touch
# the database: for them this only execs. MIGRATE_ON_START=0 skips the wait
# and the migration for any command. DB_WAIT_TIMEOUT (seconds, default 60)
# bounds the wait.
set -euo pipefail

log() { printf 'entrypoint: %s\n' "$*" >&2; }

uses_database() {
    if [[ "${MIGRATE_ON_START:-1}" == "0" ]]; then
        return 1
    fi
    if [[ "${1:-}" == "cogumi" ]]; then
        case "${2:-}" in
            sidecar | sink | demo-agent | version | verify-bundle) return 1 ;;
        esac
    fi
    return 0
}

wait_for_database() {
    local timeout="${DB_WAIT_TIMEOUT:-60}"
    local deadline=$((SECONDS + timeout))
    until python - <<'PY'
import asyncio
import sys

from sqlalchemy import text

from cogumi.config import Settings
from cogumi.db.engine import make_engine


async def ping() -> None:
    engine = make_engine(Settings().effective_database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


try:
    asyncio.run(ping())
except Exception as exc:  # any connection error: not ready yet
    print(f"entrypoint: database not ready: {type(exc).__name__}", file=sys.stderr)
    sys.exit(1)
PY
    do
        if ((SECONDS >= deadline)); then
            log "database still unreachable after ${timeout}s, giving up"
            exit 1
        fi
        sleep 2
    done
}

if [[ $# -eq 0 ]]; then
    set -- cogumi serve
fi

if uses_database "$@"; then
    log "waiting for the database"
    wait_for_database
    log "applying migrations"
    cogumi migrate >&2
fi

exec "$@"
