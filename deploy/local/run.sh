#!/usr/bin/env bash
# Run the whole latch system on this machine: a private PostgreSQL and nats-server (data kept in
# .local/stack/ between runs), the database schema, demo data, and the latch processes. Prints
# where everything runs and commands to try. Ctrl-C stops everything this script started.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(latch_root)
cd "$ROOT"

# The latch processes to run (`latch ROLE`), in start order; stopped in reverse order.
# The relay and the worker join this list when they exist.
LATCH_ROLES="api"

command -v cargo >/dev/null 2>&1 || die "cargo not found; install a Rust toolchain (https://rustup.rs)"

# A fresh machine may have neither; these install what is missing.
ensure_postgres
ensure_nats_server

# Build before starting anything, so a failing build leaves nothing running.
log "building latch (release)"
cargo build --release -p latch-cli
LATCH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/latch"
[[ -x $LATCH_BIN ]] || die "the build did not produce $LATCH_BIN"

STACK=$ROOT/.local/stack
mkdir -p "$STACK"

# What this script started, so that cleanup stops exactly that.
ROLE_NAMES=()
ROLE_PIDS=()
PG_STARTED=0

# shellcheck disable=SC2317 # called by the traps below
cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    # Finish cleaning up even if the terminal or a pipe reading our output has gone.
    trap '' PIPE
    set +e
    printf '\n' >&2
    log "stopping what this script started"
    for ((i = ${#ROLE_PIDS[@]} - 1; i >= 0; i--)); do
        if pid_alive "${ROLE_PIDS[i]}"; then
            stop_pid "${ROLE_PIDS[i]}" "latch ${ROLE_NAMES[i]}" 20
            log "latch ${ROLE_NAMES[i]} (pid ${ROLE_PIDS[i]}) stopped"
        fi
    done
    nats_stop || true
    if ((PG_STARTED)); then pg_stop "$STACK/pg" || true; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PG_STARTED=1
pg_start "$STACK/pg"
nats_start "$STACK/nats"

psql_super() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U latch "$@"; }
if [[ -z $(psql_super -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'latch'") ]]; then
    log "creating database latch"
    psql_super -d postgres -c 'CREATE DATABASE latch'
    # Demo values seeded into an earlier database are meaningless in a new one.
    rm -f "$STACK/demo.env"
fi

# The processes connect as the least-privileged login role; migrations run as the superuser.
export LATCH_DATABASE_URL="postgres://latch_api@127.0.0.1:$PGPORT/latch"
export LATCH_MIGRATION_DATABASE_URL="postgres://latch@127.0.0.1:$PGPORT/latch"
export LATCH_NATS_URL
export LATCH_LOG_FORMAT=pretty
# A LATCH_HTTP_ADDR you set is kept; otherwise the API gets a free port.
USER_HTTP_ADDR=${LATCH_HTTP_ADDR:-}

log "migrating the database"
"$LATCH_BIN" migrate --app-login latch_api

if [[ ! -f $STACK/demo.env ]]; then
    log "seeding demo data into $STACK/demo.env"
    "$LATCH_BIN" demo seed --out "$STACK/demo.env" ||
        die "demo seeding failed; if its keys file was lost, remove $STACK to start afresh"
fi
set -a
# shellcheck source=/dev/null
source "$STACK/demo.env"
set +a

# start_role NAME [ARGS...]: run `latch NAME ARGS...` in the background, logging to
# $STACK/NAME.log. Own session: a Ctrl-C reaches only this script, which stops roles in order.
start_role() {
    local name=$1
    shift
    local logfile=$STACK/$name.log
    : >"$logfile"
    setsid "$LATCH_BIN" "$name" "$@" >>"$logfile" 2>&1 &
    ROLE_NAMES+=("$name")
    ROLE_PIDS+=("$!")
    log "started latch $name (pid $!, log $logfile)"
}

# Forget the last started role (it has exited).
drop_last_role() {
    unset 'ROLE_NAMES[-1]' 'ROLE_PIDS[-1]'
}

# The API needs a port and is waited for until /readyz answers; a port taken by someone else in
# the meantime means another try on a new one.
start_api() {
    local attempt pid
    for attempt in 1 2 3 4 5; do
        if [[ -z $USER_HTTP_ADDR ]]; then
            LATCH_HTTP_ADDR="127.0.0.1:$(free_port)"
            export LATCH_HTTP_ADDR
        fi
        start_role api
        pid=${ROLE_PIDS[-1]}
        wait_for 30 ready_or_gone "$pid" "http://$LATCH_HTTP_ADDR/readyz" ||
            die "latch api is not ready after 30s; see $STACK/api.log"
        pid_alive "$pid" && return 0
        wait "$pid" 2>/dev/null || true
        drop_last_role
        if [[ -z $USER_HTTP_ADDR ]] && grep -qi 'address already in use' "$STACK/api.log"; then
            warn "$LATCH_HTTP_ADDR was taken; retrying (attempt $attempt of 5)"
            continue
        fi
        tail -n 20 "$STACK/api.log" >&2 || true
        die "latch api exited at start; see $STACK/api.log"
    done
    die "latch api could not bind a free port in 5 attempts"
}

for role in $LATCH_ROLES; do
    case $role in
    api) start_api ;;
    *) start_role "$role" ;;
    esac
done

# Everything below only talks to the user.
api="http://$LATCH_HTTP_ADDR"
reader=${LATCH_DEMO_READER_KEY:?demo.env has no LATCH_DEMO_READER_KEY}
admin=${LATCH_DEMO_ADMIN_TOKEN:?demo.env has no LATCH_DEMO_ADMIN_TOKEN}
granted=${LATCH_DEMO_CARD_GRANTED:?demo.env has no LATCH_DEMO_CARD_GRANTED}
site=${LATCH_DEMO_SITE:?demo.env has no LATCH_DEMO_SITE}
psql=psql
command -v psql >/dev/null 2>&1 || psql=$PG_BIN/psql
psql_cmd="$psql -h 127.0.0.1 -p $PGPORT -U latch latch"
unlock() {
    printf "  curl -s -X POST %s/v1/unlock -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{\"card_id\":\"%s\"}'" \
        "$api" "$reader" "$1"
}
# One unlock line per kind of refused card the seed made (whichever of these it wrote).
denied_lines=""
for var in LATCH_DEMO_CARD_DENIED LATCH_DEMO_CARD_EXPIRED LATCH_DEMO_CARD_INACTIVE LATCH_DEMO_CARD_UNKNOWN; do
    if [[ -n ${!var:-} ]]; then denied_lines+=$'\n'$(unlock "${!var}"); fi
done
role_logs=""
for i in "${!ROLE_NAMES[@]}"; do
    role_logs+=$(printf '\n  latch %-6s pid %-8s log %s' "${ROLE_NAMES[i]}" "${ROLE_PIDS[i]}" "$STACK/${ROLE_NAMES[i]}.log")
done

cat <<BANNER

======================================================================================
latch is running
  API         $api   (API docs: $api/docs/)$role_logs
  PostgreSQL  127.0.0.1:$PGPORT, database latch   data $LATCH_PG_DATA   log $LATCH_PG_DATA/log
  NATS        $LATCH_NATS_URL   monitoring $NATS_MONITOR_URL
              store $STACK/nats/store   log $STACK/nats/nats.log
  Demo data   site $site; tokens and cards in $STACK/demo.env

Try it:
  # The main entrance reader asks to unlock for a card with a grant, then for refused ones:
$(unlock "$granted")$denied_lines

  # Check in, then out:
  curl -s -X POST $api/v1/check-ins -H 'Authorization: Bearer $reader' -H 'Content-Type: application/json' -d '{"card_id":"$granted"}'
  curl -s -X POST $api/v1/check-outs -H 'Authorization: Bearer $reader' -H 'Content-Type: application/json' -d '{"card_id":"$granted"}'

  # The registry of actions, and who is on site (as the admin):
  curl -s '$api/v1/actions?limit=5' -H 'Authorization: Bearer $admin'
  curl -s $api/v1/sites/$site/presence -H 'Authorization: Bearer $admin'

  # The rows behind them:
  $psql_cmd -c 'SELECT kind, decision, reason, card_id, occurred_at FROM actions ORDER BY occurred_at DESC LIMIT 5'
  $psql_cmd -c 'SELECT id, subject, ordering_key, created_at FROM outbox ORDER BY id DESC LIMIT 5'

Ctrl-C stops everything this script started.
======================================================================================
BANNER

# Wait for Ctrl-C (the trap then cleans up), or for one of our processes to exit by itself,
# which ends the run: the rest would be of little use without it.
rc=0
wait -n || rc=$?
for i in "${!ROLE_PIDS[@]}"; do
    pid_alive "${ROLE_PIDS[i]}" || warn "latch ${ROLE_NAMES[i]} exited (see $STACK/${ROLE_NAMES[i]}.log)"
done
pid_alive "$LATCH_NATS_PID" || warn "nats-server exited (see $STACK/nats/nats.log)"
exit $((rc == 0 ? 1 : rc))
