#!/usr/bin/env bash
# Starts a throw-away PostgreSQL for the tests that also run the back office on PostgreSQL
# (tests/backoffice/test_live_server.py) and prints the URL to use as BACKOFFICE_TEST_POSTGRES_URL.
# Installs Debian's postgresql when it is missing and we may (root + apt). Prints nothing and
# exits 0 when PostgreSQL cannot be had: those tests are then skipped, the rest still run.
#   usage: url=$(bash scripts/ci_postgres.sh start DIR) ... bash scripts/ci_postgres.sh stop DIR
set -uo pipefail
action=${1:?start|stop}
dir=${2:?a scratch directory}
port=${CI_POSTGRES_PORT:-55432}

bin_dir() {
    local initdb
    initdb=$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)
    [ -n "$initdb" ] && dirname "$(readlink -f "$initdb")"
}

as_owner() {  # initdb and postgres refuse to run as root
    if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

case $action in
start)
    bin=$(bin_dir)
    if [ -z "$bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "• installing PostgreSQL (Debian package) for the PostgreSQL tests…" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2 || true
        bin=$(bin_dir)
    fi
    if [ -z "$bin" ] || { [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; }; then
        echo "• PostgreSQL not available: its tests will be skipped" >&2
        exit 0
    fi
    mkdir -p "$dir" && chmod 777 "$dir"
    as_owner "'$bin/initdb' -D '$dir/data' -A trust -U postgres -E UTF8 --locale=C.UTF-8" >"$dir/initdb.log" 2>&1 \
        || { echo "• initdb failed (see $dir/initdb.log): PostgreSQL tests skipped" >&2; exit 0; }
    as_owner "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1\" start" >&2 \
        || { echo "• PostgreSQL did not start (see $dir/server.log): its tests skipped" >&2; exit 0; }
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres backoffice_test >&2 || exit 0
    echo "postgresql+psycopg2://postgres@127.0.0.1:$port/backoffice_test"
    ;;
stop)
    bin=$(bin_dir)
    [ -n "$bin" ] && [ -d "$dir/data" ] && as_owner "'$bin/pg_ctl' -D '$dir/data' -m fast stop" >/dev/null 2>&1
    exit 0
    ;;
esac
