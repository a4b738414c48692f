#!/usr/bin/env bash
# Make a local PostgreSQL server available for the records tests and print the
# URL to use, as one shell line on standard output:
#
#   export SURGSIM_TEST_PG_URL=postgresql+psycopg://surgsim:surgsim@127.0.0.1:5432/surgsim_test
#
# Use it as:   eval "$(tools/ci_postgres.sh)"
#
# What it does (Debian, as root), skipping every step that is already done so a
# second run takes well under a second:
#   1. installs Debian's `postgresql` package through apt when no server is installed;
#   2. creates a cluster when there is none (pg_createcluster) and starts it (pg_ctlcluster);
#   3. creates the role `surgsim` (password `surgsim`, local test use only) and the
#      database `surgsim_test` owned by it.
# Progress and problems go to standard error; on failure nothing is printed on
# standard output and the exit code is 1 (the PostgreSQL tests then skip, saying why).
# Environment: SURGSIM_PG_USER, SURGSIM_PG_PASSWORD, SURGSIM_PG_DB override the names.
set -euo pipefail

PG_USER=${SURGSIM_PG_USER:-surgsim}
PG_PASSWORD=${SURGSIM_PG_PASSWORD:-surgsim}
PG_DB=${SURGSIM_PG_DB:-surgsim_test}

say() { echo "ci_postgres: $*" >&2; }
fail() { say "$*"; exit 1; }

have_server() { ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; }

if ! have_server; then
  [ "$(id -u)" = 0 ] || fail "PostgreSQL is not installed; run as root or: sudo apt-get install postgresql"
  command -v apt-get >/dev/null 2>&1 || fail "PostgreSQL is not installed and apt-get is missing"
  say "installing Debian's postgresql (apt)"
  export DEBIAN_FRONTEND=noninteractive
  # the package must not try to start services through an init system a container lacks
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  have_server || fail "apt installed postgresql but no server binary was found"
fi
command -v pg_lsclusters >/dev/null 2>&1 || fail "pg_lsclusters missing (package postgresql-common)"

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# the first cluster of the newest version, created when there is none
read -r VER CLUSTER PORT STATUS < <(pg_lsclusters -h 2>/dev/null | sort -k1,1V | tail -n1 | awk '{print $1, $2, $3, $4}') || true
if [ -z "${VER:-}" ]; then
  VER=$(ls /usr/lib/postgresql | sort -V | tail -n1)
  [ "$(id -u)" = 0 ] || fail "no PostgreSQL cluster exists; run as root to create one"
  say "creating cluster $VER/main"
  pg_createcluster "$VER" main >&2
  read -r VER CLUSTER PORT STATUS < <(pg_lsclusters -h | sort -k1,1V | tail -n1 | awk '{print $1, $2, $3, $4}')
fi

if [ "$STATUS" != online ]; then
  say "starting cluster $VER/$CLUSTER on port $PORT"
  pg_ctlcluster "$VER" "$CLUSTER" start >&2 || fail "could not start cluster $VER/$CLUSTER; see /var/log/postgresql/postgresql-$VER-$CLUSTER.log"
fi

# wait until it accepts connections (at most ~15 s)
for _ in $(seq 1 60); do
  if as_postgres psql -p "$PORT" -Atqc "select 1" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.25
done
[ "${ready:-}" = 1 ] || fail "cluster $VER/$CLUSTER on port $PORT does not accept connections"

psql_pg() { as_postgres psql -p "$PORT" -v ON_ERROR_STOP=1 -Atq "$@"; }

if [ "$(psql_pg -c "select 1 from pg_roles where rolname = '$PG_USER'")" != 1 ]; then
  say "creating role $PG_USER"
  psql_pg -c "create role \"$PG_USER\" login password '$PG_PASSWORD' createdb" >&2
fi
if [ "$(psql_pg -c "select 1 from pg_database where datname = '$PG_DB'")" != 1 ]; then
  say "creating database $PG_DB"
  psql_pg -c "create database \"$PG_DB\" owner \"$PG_USER\"" >&2
fi

URL="postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PORT/$PG_DB"
# check the URL itself works over TCP with the password (pg_hba: scram on 127.0.0.1)
PGPASSWORD=$PG_PASSWORD psql -h 127.0.0.1 -p "$PORT" -U "$PG_USER" -d "$PG_DB" -Atqc "select 1" >/dev/null 2>&1 \
  || fail "the server runs but $PG_USER cannot sign in over TCP on 127.0.0.1:$PORT (check pg_hba.conf)"
say "ready: $PG_DB on 127.0.0.1:$PORT"
echo "export SURGSIM_TEST_PG_URL=$URL"
