#!/usr/bin/env bash
# Run the whole latch system on this machine: a private PostgreSQL and nats-server (data kept in
# .local/stack/ between runs), the database schema, demo data, the simulated legacy system and
# webhook receiver (latch-sim legacy), and latch api, relay and worker. Then it sends a short
# burst of simulated card-reader traffic through the pipeline, reports what was committed,
# relayed, delivered and dead-lettered, and prints where everything runs and commands to try.
# Ctrl-C stops everything this script started.
#
# Settings (environment):
#   LATCH_HTTP_ADDR=HOST:PORT  the API's address (default: a free port on 127.0.0.1)
#   LATCH_PROMETHEUS=1         also run a private Prometheus (Debian's prometheus package,
#                              installed if missing) on a free port, scraping the api, relay and
#                              worker with the rules of deploy/prometheus/alerts.yml
#   LATCH_TRAFFIC=0            skip the burst of simulated card-reader traffic
#   LATCH_NATS_CLUSTER=3       run a 3-node JetStream cluster on loopback instead of one
#                              nats-server (streams with 3 replicas; 3 to 9 nodes)
#   LATCH_STACK_TLS=0          serve the API over plain HTTP instead of HTTPS with the stack's
#                              private CA (.local/stack/tls/, made on the first run)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(latch_root)
cd "$ROOT"

command -v cargo >/dev/null 2>&1 || die "cargo not found; install a Rust toolchain (https://rustup.rs)"

# A fresh machine may have none of these; these install what is missing.
ensure_postgres
ensure_nats_server
if ! command -v python3 >/dev/null 2>&1; then
    log "python3 not found (this script reads JSON with it); installing Debian's python3"
    apt_install python3
fi
WANT_PROMETHEUS=0
[[ ${LATCH_PROMETHEUS:-0} == 0 ]] || WANT_PROMETHEUS=1
((WANT_PROMETHEUS == 0)) || ensure_prometheus

# Build before starting anything, so a failing build leaves nothing running.
log "building latch, latch-sim and latch-load (release)"
cargo build --release -p latch-cli -p latch-sim -p latch-load
LATCH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/latch"
SIM_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/latch-sim"
LOAD_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/latch-load"
[[ -x $LATCH_BIN ]] || die "the build did not produce $LATCH_BIN"
[[ -x $SIM_BIN && -x $LOAD_BIN ]] || die "the build did not produce $SIM_BIN and $LOAD_BIN"

STACK=$ROOT/.local/stack
mkdir -p "$STACK"

# What this script started (besides PostgreSQL and nats-server), in start order, so that cleanup
# stops exactly that, in reverse order. PIDS_FILE keeps "PID BINARY NAME" of each, so that the
# next run can stop what a run killed outright (no cleanup) left behind.
PROC_NAMES=()
PROC_PIDS=()
PROC_LOGS=()
BURST_PIDS=()
PIDS_FILE=$STACK/processes
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
    for i in "${BURST_PIDS[@]}"; do stop_pid "$i" "latch-load readers" 10; done
    for ((i = ${#PROC_PIDS[@]} - 1; i >= 0; i--)); do
        if pid_alive "${PROC_PIDS[i]}"; then
            stop_pid "${PROC_PIDS[i]}" "${PROC_NAMES[i]}" 20
            log "${PROC_NAMES[i]} (pid ${PROC_PIDS[i]}) stopped"
        fi
    done
    rm -f -- "$PIDS_FILE"
    nats_stop || true
    if ((PG_STARTED)); then pg_stop "$STACK/pg" || true; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Processes an earlier run started and could not stop (it was killed outright): stop those still
# running the binary they were started as, by their pid.
stop_leftovers() {
    local pid bin name exe
    [[ -f $PIDS_FILE ]] || return 0
    while read -r pid bin name; do
        [[ $pid =~ ^[0-9]+$ ]] || continue
        pid_alive "$pid" || continue
        exe=$(readlink -- "/proc/$pid/exe" 2>/dev/null) || continue
        [[ ${exe% (deleted)} == "$bin" ]] || continue
        log "stopping ${name:-$bin} (pid $pid), left running by an earlier run"
        stop_pid "$pid" "${name:-$bin}" 15
    done <"$PIDS_FILE"
    rm -f -- "$PIDS_FILE"
}
stop_leftovers

PG_STARTED=1
pg_start "$STACK/pg"
if [[ ${LATCH_NATS_CLUSTER:-1} =~ ^[3-9]$ ]]; then
    nats_cluster_start "$STACK/nats-cluster" "$LATCH_NATS_CLUSTER"
else
    nats_start "$STACK/nats"
fi

psql_super() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U latch "$@"; }
if [[ -z $(psql_super -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'latch'") ]]; then
    log "creating database latch"
    psql_super -d postgres -c 'CREATE DATABASE latch'
    # Demo values seeded into an earlier database are meaningless in a new one.
    rm -f "$STACK/demo.env"
fi

# Each process connects as a login with only its own rights (the API's, the relay's, the
# worker's, the operator commands'); migrations, admin tokens and the demo seed use the
# superuser.
export LATCH_DATABASE_URL="postgres://latch_api@127.0.0.1:$PGPORT/latch"
RELAY_DATABASE_URL="postgres://latch_relay@127.0.0.1:$PGPORT/latch"
OPERATOR_DATABASE_URL="postgres://latch_ops@127.0.0.1:$PGPORT/latch"
WORKER_DATABASE_URL="postgres://latch_worker@127.0.0.1:$PGPORT/latch"
# Webhook endpoints on this machine (the simulator's subscribers) are plain http on loopback;
# elsewhere endpoints must be https on public addresses.
export LATCH_WEBHOOKS_ALLOW_HTTP=true LATCH_WEBHOOKS_ALLOW_ADDRESSES=loopback
export LATCH_MIGRATION_DATABASE_URL="postgres://latch@127.0.0.1:$PGPORT/latch"
export LATCH_NATS_URL
export LATCH_LOG_FORMAT=pretty
# A LATCH_HTTP_ADDR you set is kept; otherwise the API gets a free port.
USER_HTTP_ADDR=${LATCH_HTTP_ADDR:-}
unset LATCH_HTTP_ADDR

log "migrating the database"
"$LATCH_BIN" migrate --app-login latch_api --relay-login latch_relay --operator-login latch_ops \
    --worker-login latch_worker

if [[ ! -f $STACK/demo.env ]]; then
    log "seeding demo data into $STACK/demo.env"
    "$LATCH_BIN" demo seed --out "$STACK/demo.env" ||
        die "demo seeding failed; if its keys file was lost, remove $STACK to start afresh"
fi
set -a
# shellcheck source=/dev/null
source "$STACK/demo.env"
set +a

# The legacy system's API key and the webhook signing secret: made once, kept for later runs, so
# that the simulator and the worker always agree.
SECRETS=$STACK/sinks.env
if [[ ! -s $SECRETS ]]; then
    random_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
    # A Standard Webhooks secret: whsec_ and a 32-byte key in base64.
    random_key() { head -c 32 /dev/urandom | base64 | tr -d '\n'; }
    (
        umask 077
        printf 'LATCH_STACK_TNA_KEY=tna_%s\nLATCH_STACK_WEBHOOK_SECRET=whsec_%s\n' \
            "$(random_hex)" "$(random_key)" >"$SECRETS"
    )
fi
# shellcheck source=/dev/null
source "$SECRETS"
: "${LATCH_STACK_TNA_KEY:?$SECRETS has no LATCH_STACK_TNA_KEY}"
: "${LATCH_STACK_WEBHOOK_SECRET:?$SECRETS has no LATCH_STACK_WEBHOOK_SECRET}"

# json_get EXPR [ARGS...]: print the Python expression EXPR over `d`, the JSON document on stdin
# (ARGS are sys.argv[2:]).
json_get() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$@"; }

# http_get URL: the body of a 2xx answer (no proxy: everything is on this machine; https URLs
# are checked against LATCH_HTTP_CA, the stack's CA, when set).
http_get() {
    if command -v curl >/dev/null 2>&1; then
        curl -sf --noproxy '*' --max-time 5 ${LATCH_HTTP_CA:+--cacert "$LATCH_HTTP_CA"} "$1"
    else
        python3 -c 'import os, ssl, sys, urllib.request as u
ctx = ssl.create_default_context(cafile=os.environ.get("LATCH_HTTP_CA") or None)
sys.stdout.write(u.build_opener(u.ProxyHandler({}), u.HTTPSHandler(context=ctx)).open(sys.argv[1], timeout=5).read().decode())' "$1" 2>/dev/null
    fi
}

# The stack's private CA, the API's certificate (127.0.0.1 and localhost) and one reader's
# client certificate, in $STACK/tls; made once, kept between runs (the API reads its files
# again when they change, so replacing them needs no restart).
make_tls() {
    local dir=$STACK/tls
    [[ -s $dir/ca.crt && -s $dir/api.crt && -s $dir/api.key ]] && return 0
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    log "making the stack's private CA and certificates in $dir"
    mkdir -p "$dir"
    (
        umask 077
        cd "$dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -keyout ca.key -out ca.crt -subj "/CN=latch local stack CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
        local name san usage
        for name in api reader-1; do
            if [[ $name == api ]]; then
                san="subjectAltName=IP:127.0.0.1,DNS:localhost" usage=serverAuth
            else
                san="subjectAltName=DNS:$name.readers.latch.local" usage=clientAuth
            fi
            openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
            openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 397 \
                -extfile <(printf '%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$san" "$usage") \
                -out "$name.crt" 2>/dev/null
            rm -f "$name.csr"
        done
        chmod 0644 ca.crt api.crt reader-1.crt
    ) || die "could not make the stack's certificates in $dir (openssl)"
}

# The program a command line runs: its first word after `env` and VAR=VALUE settings.
cmd_binary() {
    local word
    for word in "$@"; do
        [[ $word == env || $word =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] && continue
        readlink -f -- "$(command -v -- "$word")"
        return
    done
}

# start_proc NAME STDOUT STDERR CMD...: run CMD in the background in its own session (a Ctrl-C
# reaches only this script, which stops everything in order) and remember it.
start_proc() {
    local name=$1 out=$2 err=$3
    shift 3
    : >"$out"
    if [[ $err == "$out" ]]; then
        setsid "$@" >>"$out" 2>&1 &
    else
        : >"$err"
        setsid "$@" >>"$out" 2>>"$err" &
    fi
    PROC_NAMES+=("$name")
    PROC_PIDS+=("$!")
    PROC_LOGS+=("$err")
    printf '%s %s %s\n' "$!" "$(cmd_binary "$@")" "$name" >>"$PIDS_FILE"
    log "started $name (pid $!, log $err)"
}

# Forget the last started process (it has exited).
drop_last_proc() {
    unset 'PROC_NAMES[-1]' 'PROC_PIDS[-1]' 'PROC_LOGS[-1]'
}

# start_listening NAME LOG READY_PATH FIXED_ADDR CMD...: run CMD, with @ADDR@ in its arguments
# replaced by FIXED_ADDR or, if that is empty, by 127.0.0.1:<a free port>, and wait until
# http://ADDR/READY_PATH answers. A free port taken by someone else in the meantime means
# another try on a new one. Sets LISTEN_ADDR.
start_listening() {
    local name=$1 logfile=$2 path=$3 fixed=$4
    shift 4
    local attempt pid addr arg cmd
    for attempt in 1 2 3 4 5; do
        addr=${fixed:-127.0.0.1:$(free_port)}
        cmd=()
        for arg in "$@"; do cmd+=("${arg//@ADDR@/$addr}"); done
        start_proc "$name" "$logfile" "$logfile" "${cmd[@]}"
        pid=${PROC_PIDS[-1]}
        wait_for 60 ready_or_gone "$pid" "${LISTEN_SCHEME:-http}://$addr$path" ||
            die "$name is not ready after 60s; see $logfile"
        if pid_alive "$pid"; then
            LISTEN_ADDR=$addr
            return 0
        fi
        wait "$pid" 2>/dev/null || true
        drop_last_proc
        if [[ -z $fixed ]] && grep -qiE 'address already in use|cannot listen' "$logfile"; then
            warn "$addr was taken; retrying (attempt $attempt of 5)"
            continue
        fi
        tail -n 20 "$logfile" >&2 || true
        die "$name exited at start; see $logfile"
    done
    die "$name could not bind a free port in 5 attempts"
}

# The simulated legacy system and webhook receiver, on ports it picks itself (no race); it
# prints its URLs as one JSON line on stdout. Secrets go through the environment of the call
# (never on a command line, which any user can read).
LATCH_SIM_TNA_KEY=$LATCH_STACK_TNA_KEY LATCH_SIM_WEBHOOK_SECRET=$LATCH_STACK_WEBHOOK_SECRET \
    start_proc "latch-sim legacy" "$STACK/sim.out" "$STACK/sim.log" \
    "$SIM_BIN" legacy --addr 127.0.0.1:0 --admin-addr 127.0.0.1:0
sim_pid=${PROC_PIDS[-1]}
# shellcheck disable=SC2317 # called through wait_for
sim_started() { pid_gone "$sim_pid" || grep -q '"legacy_url"' "$STACK/sim.out"; }
wait_for 30 sim_started || die "latch-sim legacy printed no URLs within 30s; see $STACK/sim.log"
pid_alive "$sim_pid" || {
    tail -n 20 "$STACK/sim.log" >&2
    die "latch-sim legacy exited at start; see $STACK/sim.log"
}
SIM_URL=$(grep -m1 '"legacy_url"' "$STACK/sim.out" | json_get 'd["legacy_url"]')
SIM_ADMIN_URL=$(grep -m1 '"legacy_url"' "$STACK/sim.out" | json_get 'd["admin_url"]')
if ! wait_for 30 ready_or_gone "$sim_pid" "$SIM_URL/healthz" || pid_gone "$sim_pid"; then
    die "latch-sim legacy does not answer $SIM_URL/healthz; see $STACK/sim.log"
fi
log "latch-sim legacy is ready at $SIM_URL (admin $SIM_ADMIN_URL)"

API_TLS=()
API_SCHEME=http
if [[ ${LATCH_STACK_TLS:-1} != 0 ]]; then
    make_tls
    API_TLS=(LATCH_HTTP_TLS_CERT_FILE="$STACK/tls/api.crt" LATCH_HTTP_TLS_KEY_FILE="$STACK/tls/api.key"
        LATCH_HTTP_TLS_CLIENT_CA_FILE="$STACK/tls/ca.crt")
    API_SCHEME=https
    export LATCH_HTTP_CA=$STACK/tls/ca.crt
fi
LISTEN_SCHEME=$API_SCHEME start_listening "latch api" "$STACK/api.log" /readyz "$USER_HTTP_ADDR" \
    env LATCH_HTTP_ADDR=@ADDR@ "${API_TLS[@]}" "$LATCH_BIN" api
API_ADDR=$LISTEN_ADDR
API_URL=$API_SCHEME://$API_ADDR
start_listening "latch relay" "$STACK/relay.log" /readyz "" \
    env LATCH_ADMIN_ADDR=@ADDR@ LATCH_DATABASE_URL="$RELAY_DATABASE_URL" "$LATCH_BIN" relay
RELAY_ADDR=$LISTEN_ADDR
LATCH_SINKS_LEGACY_URL=$SIM_URL/tna/v2/punches LATCH_SINKS_LEGACY_SECRET=$LATCH_STACK_TNA_KEY \
    LATCH_SINKS_WEBHOOKS_URL=$SIM_URL/webhooks/latch LATCH_SINKS_WEBHOOKS_SECRET=$LATCH_STACK_WEBHOOK_SECRET \
    start_listening "latch worker" "$STACK/worker.log" /readyz "" \
    env LATCH_ADMIN_ADDR=@ADDR@ LATCH_DATABASE_URL="$WORKER_DATABASE_URL" "$LATCH_BIN" worker
WORKER_ADDR=$LISTEN_ADDR

# What operator commands need to reach this stack (ports change from run to run).
OPERATOR_ENV=$STACK/operator.env
(
    umask 077
    cat >"$OPERATOR_ENV" <<EOF
# Written by deploy/local/run.sh for this run: set -a; . $OPERATOR_ENV; set +a
LATCH_DATABASE_URL=$OPERATOR_DATABASE_URL
LATCH_MIGRATION_DATABASE_URL=$LATCH_MIGRATION_DATABASE_URL
LATCH_NATS_URL=$LATCH_NATS_URL
LATCH_API_URL=$API_URL
LATCH_API_CA_FILE=${LATCH_HTTP_CA:-}
LATCH_ADMIN_TOKEN=${LATCH_DEMO_ADMIN_TOKEN:-}
EOF
)

# --- Prometheus (LATCH_PROMETHEUS=1) -----------------------------------------------------------

PROM_URL=
start_prometheus() {
    local dir=$STACK/prometheus template=deploy/prometheus/prometheus.yml
    mkdir -p "$dir/data"
    # The shipped configuration with this run's addresses, a 5 s scrape interval (the burst
    # below lasts 5 s) and the rules' absolute path.
    sed -e "s|\"127.0.0.1:8080\"|\"$API_ADDR\"|" \
        -e "s|\"127.0.0.1:9101\"|\"$RELAY_ADDR\"|" \
        -e "s|\"127.0.0.1:9102\"|\"$WORKER_ADDR\"|" \
        -e "s|^\(  *\)scrape_interval: 15s|\1scrape_interval: 5s|" \
        -e "s|^\(  *\)scrape_timeout: 10s|\1scrape_timeout: 5s|" \
        -e "s|^\(  *\)evaluation_interval: 15s|\1evaluation_interval: 5s|" \
        -e "s|^  - alerts.yml\$|  - $ROOT/deploy/prometheus/alerts.yml|" \
        "$template" >"$dir/prometheus.yml"
    if [[ $API_SCHEME == https ]]; then
        # The API's job over HTTPS, trusting the stack's CA.
        python3 - "$dir/prometheus.yml" "$LATCH_HTTP_CA" <<'PY' || die "could not point Prometheus at the API over HTTPS"
import sys
path, ca = sys.argv[1], sys.argv[2]
text = open(path).read()
job = "  - job_name: latch-api\n"
assert text.count(job) == 1, "no latch-api job"
text = text.replace(job, job + f"    scheme: https\n    tls_config:\n      ca_file: {ca}\n")
open(path, "w").write(text)
PY
    fi
    local want
    for want in "\"$API_ADDR\"" "\"$RELAY_ADDR\"" "\"$WORKER_ADDR\"" "scrape_interval: 5s" "- $ROOT/deploy/prometheus/alerts.yml"; do
        grep -qF -- "$want" "$dir/prometheus.yml" || die "$template has changed: could not put $want into it"
    done
    start_listening prometheus "$dir/prometheus.log" /-/ready "" \
        "$PROMETHEUS_BIN" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
        --web.listen-address=@ADDR@
    PROM_URL=http://$LISTEN_ADDR
    log "Prometheus is ready at $PROM_URL (config $dir/prometheus.yml)"
}
((WANT_PROMETHEUS == 0)) || start_prometheus

# --- a webhook endpoint: the simulator's subscriber "demo" --------------------------------------

# An endpoint for every event, delivering to latch-sim's named subscriber "demo". Its secret is
# shown once, so a run that finds the endpoint from an earlier run rotates it (at once) to
# hand the new one to the simulator, which forgot its subscribers when it stopped.
DEMO_ENDPOINT=
subscribe_demo_endpoint() {
    DEMO_ENDPOINT=$(python3 - "$API_URL" "$LATCH_DEMO_ADMIN_TOKEN" "${LATCH_HTTP_CA:-}" \
        "$SIM_URL/webhooks/endpoints/demo" "$SIM_ADMIN_URL/endpoints/demo" <<'PY'
import json, ssl, sys, urllib.request
api, token, ca, url, subscriber = sys.argv[1:6]
context = ssl.create_default_context(cafile=ca) if ca else None
def call(method, path, body=None):
    request = urllib.request.Request(api + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        return json.load(answer)
found = [e for e in call("GET", "/v1/webhooks/endpoints") if e["url"] == url]
if found:
    endpoint = call("POST", f"/v1/webhooks/endpoints/{found[0]['id']}/secret:rotate", {"grace_secs": 0})
    if endpoint.get("disabled_at"):
        call("PATCH", f"/v1/webhooks/endpoints/{endpoint['id']}", {"disabled": False})
else:
    endpoint = call("POST", "/v1/webhooks/endpoints",
                    {"url": url, "description": "latch-sim demo subscriber"})
put = urllib.request.Request(subscriber, method="PUT",
    data=json.dumps({"secrets": [endpoint["secret"]]}).encode(),
    headers={"Content-Type": "application/json"})
urllib.request.urlopen(put, timeout=10).close()
print(endpoint["id"])
PY
    ) || warn "could not subscribe the simulator's demo endpoint; webhook endpoints are not shown"
}
subscribe_demo_endpoint

# --- a burst of simulated card-reader traffic ------------------------------------------------

# Each prints a number, or ? when it cannot tell.
count_actions() { psql_super -d latch -tAc 'SELECT count(*) FROM actions' 2>/dev/null || echo '?'; }
# Events the relay stored in the stream since it started.
relayed() {
    http_get "http://$RELAY_ADDR/metrics" |
        awk '$1 == "latch_relay_published_total" { printf "%d\n", $2; found = 1 } END { if (!found) print "?" }'
}
# "LEGACY WEBHOOKS ENDPOINT": effects (first applications of an event) at each simulated sink
# and at the demo endpoint's subscriber.
delivered() {
    local sinks endpoint
    sinks=$(http_get "$SIM_ADMIN_URL/stats" | json_get '"%d %d" % (d["legacy"]["effects"], d["webhooks"]["effects"])' 2>/dev/null) ||
        sinks='? ?'
    endpoint=$(http_get "$SIM_ADMIN_URL/endpoints/demo/stats" | json_get 'd["applied"]' 2>/dev/null) || endpoint='?'
    echo "$sinks $endpoint"
}
# `latch outbox status --json`; it exits 3 when a threshold is exceeded, which is data here.
outbox_status() {
    local rc=0 out
    out=$(LATCH_DATABASE_URL=$OPERATOR_DATABASE_URL "$LATCH_BIN" outbox status --json --max-age 1h 2>/dev/null) || rc=$?
    ((rc == 0 || rc == 3)) || return 1
    printf '%s\n' "$out"
}
dead_letters() {
    local status
    if status=$(outbox_status); then
        json_get 'd["dead_letters"]' <<<"$status" 2>/dev/null || echo '?'
    else
        echo '?'
    fi
}
# True once nothing waits anywhere: no outbox row, nothing pending or in flight at any sink.
# shellcheck disable=SC2317 # called through wait_for
drained() {
    local status
    status=$(outbox_status) || return 1
    [[ $(json_get 'int(d["outbox"]["pending_rows"] == 0 and all(c["pending"] == 0 and c["in_flight"] == 0 for c in d["consumers"]))' \
        <<<"$status" 2>/dev/null) == 1 ]]
}
# diff AFTER BEFORE: AFTER - BEFORE, or ? if either is unknown.
diff_of() {
    if [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]]; then echo $(($1 - $2)); else echo '?'; fi
}

burst() {
    if ! "$LOAD_BIN" readers --help >/dev/null 2>&1; then
        warn "this latch-load has no 'readers' subcommand; no traffic sent"
        return 0
    fi
    local actions0 relayed0 legacy0 webhooks0 endpoint0 dead0 actions1 relayed1 legacy1 webhooks1 endpoint1 dead1 pid
    actions0=$(count_actions)
    relayed0=$(relayed)
    read -r legacy0 webhooks0 endpoint0 < <(delivered)
    dead0=$(dead_letters)

    log "sending simulated card-reader traffic for 5 s: check-ins/outs at 40/s, unlocks at 20/s"
    local readers=("$LOAD_BIN" readers --url "$API_URL" --keys-file "$STACK/demo.env" --duration 5s --json
        ${LATCH_HTTP_CA:+--ca-file "$LATCH_HTTP_CA"})
    "${readers[@]}" --endpoint presence-mix --rate 40 >"$STACK/traffic-presence.json" 2>"$STACK/traffic-presence.log" &
    BURST_PIDS+=("$!")
    "${readers[@]}" --endpoint unlock --rate 20 --seed 7 >"$STACK/traffic-unlock.json" 2>"$STACK/traffic-unlock.log" &
    BURST_PIDS+=("$!")
    for pid in "${BURST_PIDS[@]}"; do
        wait "$pid" || warn "latch-load readers (pid $pid) failed; see $STACK/traffic-*.log"
    done
    BURST_PIDS=()
    local kind
    for kind in presence unlock; do
        [[ -s $STACK/traffic-$kind.json ]] || continue
        json_get '"    {:<14} {} requests sent; answers: {}".format(sys.argv[2], d["requests"], ", ".join(f"{k} x{v}" for k, v in sorted(d["statuses"].items())))' \
            "$kind" <"$STACK/traffic-$kind.json" 2>/dev/null || true
    done

    log "waiting for the pipeline to drain (outbox, stream, sinks)"
    wait_for 60 drained || warn "the pipeline has not drained within 60 s; the numbers below are what got through so far"
    actions1=$(count_actions)
    relayed1=$(relayed)
    read -r legacy1 webhooks1 endpoint1 < <(delivered)
    dead1=$(dead_letters)
    cat <<REPORT
    committed      $(diff_of "$actions1" "$actions0") actions (PostgreSQL table actions, each with its outbox row)
    relayed        $(diff_of "$relayed1" "$relayed0") events into LATCH_EVENTS (the relay's latch_relay_published_total)
    delivered      $(diff_of "$legacy1" "$legacy0") to the legacy T&A (check-ins/outs), $(diff_of "$webhooks1" "$webhooks0") to the webhook receiver (latch-sim /stats),
                   $(diff_of "$endpoint1" "$endpoint0") to the webhook endpoint ${DEMO_ENDPOINT:-?} (latch-sim /endpoints/demo/stats)
    dead-lettered  $(diff_of "$dead1" "$dead0") (latch outbox status: dead_letters; $dead1 in LATCH_DLQ)
REPORT
}
if [[ ${LATCH_TRAFFIC:-1} != 0 ]]; then
    burst
fi

# --- what to try -------------------------------------------------------------------------------

reader=${LATCH_DEMO_READER_KEY:?demo.env has no LATCH_DEMO_READER_KEY}
admin=${LATCH_DEMO_ADMIN_TOKEN:?demo.env has no LATCH_DEMO_ADMIN_TOKEN}
granted=${LATCH_DEMO_CARD_GRANTED:?demo.env has no LATCH_DEMO_CARD_GRANTED}
site=${LATCH_DEMO_SITE:?demo.env has no LATCH_DEMO_SITE}
psql=psql
command -v psql >/dev/null 2>&1 || psql=$PG_BIN/psql
psql_cmd="$psql -h 127.0.0.1 -p $PGPORT -U latch latch"
# curl as the hints below call it: trusting the stack's CA when the API serves HTTPS.
curl_api="curl${LATCH_HTTP_CA:+ --cacert $LATCH_HTTP_CA}"
unlock() {
    printf "  %s -s -X POST %s/v1/unlock -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{\"card_id\":\"%s\"}'" \
        "$curl_api" "$API_URL" "$reader" "$1"
}
# One unlock line per kind of refused card the seed made (whichever of these it wrote).
denied_lines=""
for var in LATCH_DEMO_CARD_DENIED LATCH_DEMO_CARD_EXPIRED LATCH_DEMO_CARD_INACTIVE LATCH_DEMO_CARD_UNKNOWN; do
    if [[ -n ${!var:-} ]]; then denied_lines+=$'\n'$(unlock "${!var}"); fi
done
proc_lines=""
for i in "${!PROC_NAMES[@]}"; do
    ((i == 0)) || proc_lines+=$'\n             '
    proc_lines+=$(printf '%-17s pid %-8s log %s' "${PROC_NAMES[i]}" "${PROC_PIDS[i]}" "${PROC_LOGS[i]}")
done
if [[ -n $PROM_URL ]]; then
    prom_line="$PROM_URL   (alerts: $PROM_URL/alerts; config $STACK/prometheus/prometheus.yml)"
    grafana_url=$PROM_URL
else
    prom_line="not started; LATCH_PROMETHEUS=1 $0 runs one, scraping the three roles"
    grafana_url="http://PROMETHEUS-HOST:PORT"
fi

cat <<BANNER

======================================================================================
latch is running
  API         $API_URL   (API docs: $API_URL/docs/)
  Console     $API_URL/console/   log in with the admin token $admin
  Metrics     api $API_URL/metrics   relay http://$RELAY_ADDR/metrics   worker http://$WORKER_ADDR/metrics
              (/readyz and /healthz beside each)
  Simulator   legacy T&A $SIM_URL/tna/v2/punches   webhooks $SIM_URL/webhooks/latch
              what they received: $SIM_ADMIN_URL/stats   fault knobs: $SIM_ADMIN_URL/faults
              webhook endpoint ${DEMO_ENDPOINT:-(none)} -> subscriber "demo": $SIM_ADMIN_URL/endpoints/demo/stats
  Prometheus  $prom_line
  PostgreSQL  127.0.0.1:$PGPORT, database latch   data $LATCH_PG_DATA   log $LATCH_PG_DATA/log
  NATS        $LATCH_NATS_URL   monitoring $NATS_MONITOR_URL
              store $STACK/nats/store   log $STACK/nats/nats.log
  Demo data   site $site; tokens and cards in $STACK/demo.env
  Processes  $proc_lines

Try it:
  # The main entrance reader asks to unlock for a card with a grant, then for refused ones:
$(unlock "$granted")$denied_lines

  # Check in, then out:
  $curl_api -s -X POST $API_URL/v1/check-ins -H 'Authorization: Bearer $reader' -H 'Content-Type: application/json' -d '{"card_id":"$granted"}'
  $curl_api -s -X POST $API_URL/v1/check-outs -H 'Authorization: Bearer $reader' -H 'Content-Type: application/json' -d '{"card_id":"$granted"}'

  # A reader bound to its client certificate ($STACK/tls/reader-1.crt; README, "HTTPS and
  # client certificates"): enrol it with the certificate's SHA-256, then unlock with key and
  # certificate (--cert $STACK/tls/reader-1.crt --key $STACK/tls/reader-1.key); the key alone is 401:
  openssl x509 -in $STACK/tls/reader-1.crt -noout -fingerprint -sha256

  # The registry of actions, and who is on site (as the admin):
  $curl_api -s '$API_URL/v1/actions?limit=5' -H 'Authorization: Bearer $admin'
  $curl_api -s $API_URL/v1/sites/$site/presence -H 'Authorization: Bearer $admin'

  # The event feed: a page from the oldest event, then every new event as it happens:
  $curl_api -s '$API_URL/v1/events?limit=5' -H 'Authorization: Bearer $admin'
  $curl_api -sN $API_URL/v1/events/stream -H 'Authorization: Bearer $admin'

  # Webhook endpoints: the list, one's delivery figures and its last calls:
  $curl_api -s $API_URL/v1/webhooks/endpoints -H 'Authorization: Bearer $admin'
  $curl_api -s $API_URL/v1/webhooks/endpoints/${DEMO_ENDPOINT:-ID}/stats -H 'Authorization: Bearer $admin'
  $curl_api -s '$API_URL/v1/webhooks/endpoints/${DEMO_ENDPOINT:-ID}/attempts?limit=3' -H 'Authorization: Bearer $admin'

  # The rows behind them:
  $psql_cmd -c 'SELECT kind, decision, reason, card_id, occurred_at FROM actions ORDER BY occurred_at DESC LIMIT 5'
  $psql_cmd -c 'SELECT id, subject, ordering_key, created_at FROM outbox ORDER BY id DESC LIMIT 5'

  # More simulated readers (see latch-load readers --help):
  $LOAD_BIN readers --url $API_URL --keys-file $STACK/demo.env --endpoint unlock --rate 100 --duration 30s${LATCH_HTTP_CA:+ --ca-file $LATCH_HTTP_CA}

  # Make the legacy T&A fail every call, check in again: the worker retries, its breaker opens
  # (latch_worker_breaker_state), the event waits in the stream; clear the fault and it arrives:
  curl -s -X PUT $SIM_ADMIN_URL/faults -H 'Content-Type: application/json' -d '{"legacy": {"error_rate": 1}}'
  curl -s -X PUT $SIM_ADMIN_URL/faults -H 'Content-Type: application/json' -d '{}'

Operate it (the settings of this stack are in $OPERATOR_ENV):
  set -a; . $OPERATOR_ENV; set +a
  $LATCH_BIN outbox status       # backlog: outbox, stream, each sink, dead letters
  $LATCH_BIN dlq list            # dead letters; then: dlq show ID, dlq replay, dlq purge

Dashboards: start a Grafana of yours with this in its environment (README.md, Observability):
  GF_PATHS_PROVISIONING=$ROOT/grafana/provisioning
  LATCH_GRAFANA_DASHBOARDS=$ROOT/grafana/dashboards
  LATCH_PROMETHEUS_URL=$grafana_url

Ctrl-C stops everything this script started.
======================================================================================
BANNER

# Wait for Ctrl-C (the trap then cleans up), or for one of our processes to exit by itself,
# which ends the run: the rest would be of little use without it.
rc=0
wait -n || rc=$?
for i in "${!PROC_PIDS[@]}"; do
    pid_alive "${PROC_PIDS[i]}" || warn "${PROC_NAMES[i]} exited (see ${PROC_LOGS[i]})"
done
pid_alive "$LATCH_NATS_PID" || warn "nats-server exited (see $STACK/nats/nats.log)"
exit $((rc == 0 ? 1 : rc))
