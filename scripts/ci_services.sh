#!/usr/bin/env bash
# The real engines CI runs the tests on: installs Debian's postgresql, redis-server and nginx-light
# when they are missing and we may (root + apt), starts a throw-away PostgreSQL and Redis, and prints
# the variables the tests read (eval it). Prints only what could be had: without a server its tests
# start their own or are skipped with the package to install.
#   usage: eval "$(bash scripts/ci_services.sh start DIR)" ... bash scripts/ci_services.sh stop DIR
set -uo pipefail
action=${1:?start|stop}
dir=${2:?a scratch directory}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
redis_port=${CI_REDIS_PORT:-56380}

case $action in
start)
    missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "• installing ${missing[*]} (Debian packages) for the scale-out tests…" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >&2 || true
    fi
    mkdir -p "$dir" && chmod 777 "$dir"
    url=$(bash "$here/ci_postgres.sh" start "$dir/pg")
    if [ -n "$url" ]; then
        echo "export BACKOFFICE_TEST_POSTGRES_URL='$url'"
        echo "export TEST_POSTGRES_URL='${url%/*}/postgres'"
    fi
    if command -v redis-server >/dev/null; then
        mkdir -p "$dir/redis"
        if redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$dir/redis" \
               --daemonize yes --pidfile "$dir/redis/redis.pid" >&2; then
            for _ in $(seq 50); do
                redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
                sleep 0.1
            done
            echo "export TEST_REDIS_URL='redis://127.0.0.1:$redis_port/0'"
        fi
    else
        echo "• Redis not available: the tests that need it start none and are skipped" >&2
    fi
    ;;
stop)
    [ -f "$dir/redis/redis.pid" ] && kill "$(cat "$dir/redis/redis.pid")" 2>/dev/null
    bash "$here/ci_postgres.sh" stop "$dir/pg"
    exit 0
    ;;
esac
