#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 and that the test role and database
# exist. Installs and starts Debian's server when run as root and none is running.
# Prints the SQLAlchemy URL for the test database on stdout.
set -euo pipefail
HOST=127.0.0.1 PORT=5432 ROLE=rnp PASS=rnp DB=rnp_test

ready() { pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null; }

if ! ready; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-postgres: no PostgreSQL on $HOST:$PORT and not root; start one first" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "ensure-postgres: installing postgresql (Debian)" >&2
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null \
    || pg_ctlcluster "$ver" main start
  for _ in $(seq 1 30); do ready && break; sleep 1; done
  ready || { echo "ensure-postgres: server did not come up" >&2; exit 1; }
fi

# Run SQL as a superuser: trust over TCP where allowed, else peer auth as the postgres user.
su_psql() {
  if psql -h "$HOST" -p "$PORT" -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
    psql -q -h "$HOST" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
  else
    runuser -u postgres -- psql -q -d postgres -v ON_ERROR_STOP=1 "$@"
  fi
}

if ! PGPASSWORD=$PASS psql -h "$HOST" -p "$PORT" -U "$ROLE" -d "$DB" -tAc 'select 1' >/dev/null 2>&1; then
  su_psql -tAc "select 1 from pg_roles where rolname='$ROLE'" | grep -q 1 \
    || su_psql -c "create role $ROLE login password '$PASS' createdb createrole"
  su_psql -tAc "select 1 from pg_database where datname='$DB'" | grep -q 1 \
    || su_psql -c "create database $DB owner $ROLE"
fi
# the audit tests create an application role that may only read and append the audit trail
if ! PGPASSWORD=$PASS psql -h "$HOST" -p "$PORT" -U "$ROLE" -d "$DB" -tAc \
    "select rolcreaterole from pg_roles where rolname = current_user" | grep -q t; then
  su_psql -c "alter role $ROLE createrole"
fi
echo "postgresql+psycopg://$ROLE:$PASS@$HOST:$PORT/$DB"
