#!/usr/bin/env bash
# Starts (or stops) the PostgreSQL server the scale-out tests use: a private
# instance on 127.0.0.1:54329 with its data in /var/tmp/warmline-test-pg, so it
# neither needs nor touches a system PostgreSQL. Each test creates its own
# database on it; each NATS test starts its own nats-server (so it can kill it).
#   scripts/test-services.sh start | stop
set -euo pipefail
PORT="${WARMLINE_TEST_PG_PORT:-54329}"
DATA="${WARMLINE_TEST_PG_DATA:-/var/tmp/warmline-test-pg}"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$PGBIN" ]; then
  echo "test-services: PostgreSQL is not installed (scripts/setup.sh installs it)" >&2
  exit 1
fi
# PostgreSQL refuses to run as root: as root, run it as the postgres user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    if [ ! -f "$DATA/PG_VERSION" ]; then
      mkdir -p "$DATA"
      [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DATA"
      as_pg "$PGBIN/initdb" -D "$DATA" -A trust -U postgres >/dev/null
    fi
    if as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
      echo "test-services: PostgreSQL already running on $PORT"
    else
      as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
        -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null
      echo "test-services: PostgreSQL started on 127.0.0.1:$PORT"
    fi
    as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qtAc \
      "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'warmline') THEN
         CREATE ROLE warmline LOGIN SUPERUSER PASSWORD 'warmline'; END IF; END \$\$;"
    # Databases left by earlier test runs.
    for db in $(as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qtAc \
      "SELECT datname FROM pg_database WHERE datname LIKE 'wl\_%'"); do
      as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null
    done
    ;;
  stop)
    if as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
      as_pg "$PGBIN/pg_ctl" -D "$DATA" -w -m fast stop >/dev/null
      echo "test-services: PostgreSQL stopped"
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
