#!/usr/bin/env bash
# Throw-away PostgreSQL server for the test suite.
#
#   tests/services/postgres.sh start   install Debian `postgresql` if missing, create the cluster
#                                      (first time), start it on 127.0.0.1, create database
#                                      ablate_test; the last stdout line is the SQLAlchemy URL,
#                                      e.g. postgresql+psycopg://postgres@127.0.0.1:54329/ablate_test
#                                      Already running: just prints the URL (idempotent).
#   tests/services/postgres.sh stop    pg_ctl stop -m fast (data kept; no-op when not running)
#   tests/services/postgres.sh url     print the URL if the server is running, else exit 1
#   tests/services/postgres.sh purge   stop, then delete the state folder
#
# Environment:
#   ABLATE_PG_STATE  state folder: data/, server log, socket        [/tmp/ablate-pg]
#   ABLATE_PG_PORT   TCP port on 127.0.0.1; when unset, 54329 or the next free port up to 54399
#   ABLATE_PG_DB     database to create                              [ablate_test]
#
# Trust authentication (no password) for local and 127.0.0.1 connections; fsync is off:
# for tests only. As root, initdb/pg_ctl run as the `postgres` user (they refuse root).
set -euo pipefail

STATE=${ABLATE_PG_STATE:-/tmp/ablate-pg}
DB=${ABLATE_PG_DB:-ablate_test}
DATA=$STATE/data
LOGFILE=$STATE/postgres.log
DEFAULT_PORT=54329

log() { echo "[postgres.sh] $*" >&2; }
die() {
    echo "postgres.sh: ERROR: $1" >&2
    if [[ -n ${2:-} && -f $2 ]]; then
        echo "---- last 30 lines of $2 ----" >&2
        tail -n 30 "$2" >&2
    fi
    exit 1
}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

case "$STATE" in /*) ;; *) die "ABLATE_PG_STATE must be an absolute path: $STATE" ;; esac
[[ $DB =~ ^[a-z_][a-z0-9_]*$ ]] || die "ABLATE_PG_DB must match [a-z_][a-z0-9_]*: $DB"
[[ -z ${ABLATE_PG_PORT:-} || $ABLATE_PG_PORT =~ ^[0-9]+$ ]] || die "ABLATE_PG_PORT must be a number"

# bindir: the newest /usr/lib/postgresql/*/bin that has initdb and pg_ctl
bindir() {
    local dirs=(/usr/lib/postgresql/*/bin) d
    [[ -e ${dirs[0]} ]] || return 1
    d=$(printf '%s\n' "${dirs[@]}" | sort -V | tail -n 1)
    [[ -x $d/initdb && -x $d/pg_ctl ]] && echo "$d"
}

# as_pg CMD...: run CMD as the postgres user when we are root (initdb and pg_ctl refuse root)
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

url() { echo "postgresql+psycopg://postgres@127.0.0.1:$1/$DB"; }

# running: the server of $DATA is up; prints its port
running() {
    local bin port
    bin=$(bindir) || return 1
    [[ -f $DATA/postmaster.pid && -s $STATE/port ]] || return 1
    port=$(cat "$STATE/port")
    as_pg "$bin/pg_ctl" status -D "$DATA" >/dev/null 2>&1 || return 1
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 5 || return 1
    echo "$port"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install_postgres() {
    [[ $EUID -eq 0 ]] || die "PostgreSQL is not installed and installing it needs root"
    log "installing Debian package postgresql (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # keep the package's maintainer scripts from starting the system-wide cluster
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    local aptlog
    aptlog=$(mktemp /tmp/ablate-pg-apt.XXXXXX.log)
    apt-get -o DPkg::Lock::Timeout=300 update -q >"$aptlog" 2>&1 || die "apt-get update failed" "$aptlog"
    apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends postgresql >>"$aptlog" 2>&1 ||
        die "apt-get install postgresql failed" "$aptlog"
    rm -f "$aptlog"
}

cmd_start() {
    local bin port
    if port=$(running); then
        if [[ -n ${ABLATE_PG_PORT:-} && $ABLATE_PG_PORT != "$port" ]]; then
            die "already running on port $port, not ABLATE_PG_PORT=$ABLATE_PG_PORT: run '$0 stop' first"
        fi
        log "already running on 127.0.0.1:$port (state $STATE)"
        url "$port"
        return 0
    fi
    bin=$(bindir) || { install_postgres; bin=$(bindir) || die "no initdb under /usr/lib/postgresql/*/bin"; }

    mkdir -p "$STATE"
    if [[ $EUID -eq 0 ]]; then
        chown postgres:postgres "$STATE"
    fi
    chmod 755 "$STATE"
    exec 9>>"$STATE/.lock"
    flock -w 120 9 || die "another postgres.sh start holds $STATE/.lock"
    if port=$(running); then   # a concurrent caller started it meanwhile
        url "$port"
        return 0
    fi

    if [[ ! -f $DATA/PG_VERSION ]]; then
        log "initdb $DATA ($("$bin/postgres" --version))"
        rm -rf "$DATA"
        as_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
            --no-sync >"$STATE/initdb.log" 2>&1 || die "initdb failed" "$STATE/initdb.log"
    fi

    # the port: ABLATE_PG_PORT exactly; otherwise 54329, or the next free one up to 54399
    if [[ -n ${ABLATE_PG_PORT:-} ]]; then
        port=$ABLATE_PG_PORT
        port_free "$port" || die "ABLATE_PG_PORT=$port is in use on 127.0.0.1"
    else
        port=""
        local p
        for p in $(seq "$DEFAULT_PORT" 54399); do
            if port_free "$p"; then port=$p; break; fi
        done
        [[ -n $port ]] || die "no free port in $DEFAULT_PORT-54399 on 127.0.0.1"
    fi
    echo "$port" >"$STATE/port"

    log "starting postgres on 127.0.0.1:$port (log $LOGFILE)"
    # 9>&-: the server must not inherit the start lock
    as_pg "$bin/pg_ctl" start -D "$DATA" -l "$LOGFILE" -w -t 60 -s \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $STATE -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        9>&- >&2 || die "pg_ctl start failed" "$LOGFILE"
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 30 || die "server not accepting connections" "$LOGFILE"

    if [[ $("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB'") != 1 ]]; then
        log "creating database $DB"
        "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$DB" || die "createdb $DB failed" "$LOGFILE"
    fi
    url "$port"
}

cmd_stop() {
    local bin
    if ! bin=$(bindir) || [[ ! -f $DATA/postmaster.pid ]]; then
        log "not running (state $STATE)"
        return 0
    fi
    if ! as_pg "$bin/pg_ctl" status -D "$DATA" >/dev/null 2>&1; then
        log "not running (stale postmaster.pid)"
        return 0
    fi
    log "stopping postgres ($DATA)"
    as_pg "$bin/pg_ctl" stop -D "$DATA" -m fast -w -t 60 -s >&2 || die "pg_ctl stop failed" "$LOGFILE"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    url)
        port=$(running) || { log "not running (state $STATE)"; exit 1; }
        url "$port"
        ;;
    purge)
        cmd_stop
        log "removing $STATE"
        rm -rf "$STATE"
        ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
