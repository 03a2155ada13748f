#!/usr/bin/env bash
# Benchmark latch and the limits of its dependencies in one run, on a private stack.
#
#   ./deploy/local/bench.sh            # the full run (about 30 minutes)
#   ./deploy/local/bench.sh --smoke    # every stage for a few seconds, one repetition (CI)
#
# Starts its own PostgreSQL cluster and nats-server (JetStream, sync_interval: always) on
# free ports under .local/bench-run-*, builds latch, latch-sim and latch-load (release), seeds a site,
# and measures, each baseline in the same run as what it is compared with:
#   1. PostgreSQL's limit: pgbench running latch's real unlock and check-in statements
#      (captured from the API) at concurrency 1/4/16/64;
#   2. the latch API: `latch-load readers` closed loop at the same concurrencies (unlocks and
#      check-ins), and unlocks in an open loop at half the best rate, against pgbench -R;
#   3. JetStream's limit: `latch-load jetstream` single publishes and atomic batches;
#   4. the relay: draining a pre-filled outbox, against pgbench doing the relay's claim +
#      delete and against raw atomic batches of the relay's size;
#   5. the pipeline (api -> relay -> worker -> latch-sim legacy) at fixed offered loads:
#      commit->stream and commit->delivered lag from the relay's and worker's histograms,
#      and the backlog drain after a simulated legacy outage;
#   6. the event feed: 1,000 Server-Sent Events clients on one API process while readers
#      check in at 200/s (commit->client latency against a JetStream consumer reading the
#      stream directly, the API's memory per client and CPU per event sent), and paging
#      through the stream with GET /v1/events against an ordered consumer reading it all;
#   7. webhook endpoints (the worker with LATCH_DATABASE_URL, endpoints seeded in
#      webhook_endpoints, each a named subscriber of latch-sim): 100 endpoints receiving
#      every event while readers check in at 200/s (20,000 deliveries/s offered: deliveries/s
#      achieved, commit->delivered, CPU per delivery, RSS, the backlog's drain), the same with
#      10 of them on a closed port (the healthy ones' figures against the first run's), both
#      again at 50/s (below the worker's capacity), and
#      10,000 idle endpoints against none (startup to rest, RSS and CPU at rest);
#   8. partitioned workers: a backlog delivered to both sinks answering after 5 ms by 1, 2 and
#      4 workers sharing 8 partitions; and the relay draining the outbox into a 3-node
#      JetStream cluster with 3 replicas against the single server (the price of replication);
#   9. the peak RSS of every latch process.
# Writes bench-results/<UTC timestamp>/: results.md (BENCHMARKS.md-ready tables, targets
# met or missed), plots/*.png, results.jsonl (every run), machine.json, raw/, logs/.
# Numbers are never asserted; any stage that fails makes the script exit non-zero. Ctrl-C
# stops everything it started.
#
# Options:
#   --smoke          tiny sizes, a few seconds per stage, 1 repetition
#   --reps N         repetitions of every measurement (default 3; smoke 1)
#   --duration S     seconds of each measured run (default 10; smoke 2)
#   --only LIST      run only these stages, comma-separated: write,limits,jetstream,pipeline,relay,feed,webhooks,scale,replication
#   --no-build       use the binaries already in target/
#   --dev            build and use debug binaries: quicker to build, meaningless numbers
#                    (for --smoke in CI, to check that the harness still works)
#   --out DIR        results directory (default bench-results/<timestamp>)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(latch_root)
cd "$ROOT"
export PYTHONDONTWRITEBYTECODE=1

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

ARGS=("$@")
SMOKE=0 REPS='' DURATION='' ONLY='' BUILD=1 OUT='' PROFILE=release
while (($#)); do
    case $1 in
    --smoke) SMOKE=1 ;;
    --reps) REPS=${2:?--reps needs a number}; shift ;;
    --duration) DURATION=${2:?--duration needs seconds}; shift ;;
    --only) ONLY=${2:?--only needs a list}; shift ;;
    --no-build) BUILD=0 ;;
    --dev) PROFILE=debug ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done

# --- sizes ---------------------------------------------------------------------------------
if ((SMOKE)); then
    MODE=smoke
    CONCURRENCIES=(1 4)
    : "${REPS:=1}" "${DURATION:=2}"
    WARMUP=1
    DOORS=5 HOLDERS=500
    NOTIFY_C=4
    RELAY_ROWS=2000
    OUTAGE=3 OUTAGE_LEAD=2 OUTAGE_TAIL=5 DRAIN_MAX=60
    PIPE_SHARES=(25)
    FEED_CLIENTS=20 FEED_RATE=50 FEED_ROWS=2000
    WH_ENDPOINTS=10 WH_DOWN=1 WH_RATE=20 WH_LOW_RATE=10 WH_IDLE=100 WH_DRAIN_MAX=120 WH_START_MAX=120
    SCALE_EVENTS=400 SCALE_HOLDERS=100
else
    MODE=full
    CONCURRENCIES=(1 4 16 64)
    : "${REPS:=3}" "${DURATION:=10}"
    WARMUP=3
    DOORS=20 HOLDERS=10000
    NOTIFY_C=16
    RELAY_ROWS=100000
    OUTAGE=60 OUTAGE_LEAD=5 OUTAGE_TAIL=30 DRAIN_MAX=300
    PIPE_SHARES=(25 50 75)
    FEED_CLIENTS=1000 FEED_RATE=200 FEED_ROWS=100000
    WH_ENDPOINTS=100 WH_DOWN=10 WH_RATE=200 WH_LOW_RATE=50 WH_IDLE=10000 WH_DRAIN_MAX=600 WH_START_MAX=600
    SCALE_EVENTS=20000 SCALE_HOLDERS=1000
fi
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive whole number"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "--duration must be a positive whole number of seconds"
RELAY_BATCH=500
# The API's database pool (LATCH_DATABASE_POOL_SIZE, default 16): pgbench's open loop gets as
# many connections.
API_POOL=16
# The relay's batch size is what the drain is compared with; keep the fill a multiple of it.
((RELAY_ROWS % RELAY_BATCH == 0)) || die "RELAY_ROWS must be a multiple of $RELAY_BATCH"

want() { [[ -z $ONLY || ,$ONLY, == *,"$1",* ]]; }
for stage in ${ONLY//,/ }; do
    case $stage in write | limits | jetstream | pipeline | relay | feed | webhooks | scale | replication) ;; *) die "--only: unknown stage $stage" ;; esac
done

command -v cargo >/dev/null 2>&1 || die "cargo not found; install a Rust toolchain (https://rustup.rs)"
command -v python3 >/dev/null 2>&1 || die "python3 not found (the harness parses and plots with it)"
command -v curl >/dev/null 2>&1 || apt_install curl
# The feed stage holds a thousand connections open in the API and in the load generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Other heavy work makes every number here meaningless: say so (the run still goes on).
busy=$(pgrep -x -d, 'cargo|rustc|cc1|ld' 2>/dev/null || true)
if [[ -n $busy ]]; then
    warn "other builds are running (pids $busy): the numbers will be noisy; rerun on an idle machine"
fi

ensure_postgres
ensure_nats_server
[[ -x $PG_BIN/pgbench ]] || die "no pgbench in $PG_BIN (Debian's postgresql package ships it)"

if ((BUILD)); then
    log "building latch, latch-sim and latch-load ($PROFILE)"
    if [[ $PROFILE == release ]]; then
        cargo build --release -p latch-cli -p latch-sim -p latch-load
    else
        warn "debug binaries: the numbers of this run mean nothing"
        cargo build -p latch-cli -p latch-sim -p latch-load
    fi
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LATCH_BIN=$TARGET_DIR/$PROFILE/latch
SIM_BIN=$TARGET_DIR/$PROFILE/latch-sim
LOAD_BIN=$TARGET_DIR/$PROFILE/latch-load
[[ -x $LATCH_BIN && -x $SIM_BIN && -x $LOAD_BIN ]] || die "no $PROFILE binaries in $TARGET_DIR/$PROFILE (build them, or drop --no-build)"

# --- results and the private stack -----------------------------------------------------------
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
suffix=
if ((SMOKE)); then suffix=-smoke; fi
OUT=${OUT:-$ROOT/bench-results/$STAMP$suffix}
mkdir -p "$OUT/raw" "$OUT/logs" "$OUT/plots"
OUT=$(cd -P -- "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
RAW=$OUT/raw
LOGS=$OUT/logs
BENCH_PY=(python3 "$ROOT/bench/bench.py")

mkdir -p "$ROOT/.local"
RUN_DIR=$(mktemp -d "$ROOT/.local/bench-run-XXXXXX")
echo "$$" >"$RUN_DIR/owner.pid"
# As root, PostgreSQL runs as another user, who must be able to enter it.
chmod 0755 "$RUN_DIR"

# What this script started, so that cleanup stops exactly that.
API_PID='' RELAY_PID='' WORKER_PID='' SIM_PID='' LOAD_PID='' LIMITED_PID=''
SCALE_PIDS=() SINGLE_NATS_PID=''
PG_STARTED=0
STAGE=setup

# shellcheck disable=SC2317 # called by the traps below
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    trap '' PIPE
    set +e
    if ((rc != 0)); then
        printf '\nerror: the benchmark failed during stage "%s" (exit %s); logs in %s\n' "$STAGE" "$rc" "$LOGS" >&2
    fi
    log "stopping what this script started"
    for pid in "$LOAD_PID" "$WORKER_PID" "${SCALE_PIDS[@]}" "$RELAY_PID" "$SIM_PID" "$API_PID" "${LIMITED_PID:-}"; do
        [[ -n $pid ]] && stop_pid "$pid" "pid $pid" 20
    done
    nats_stop || true
    [[ -z $SINGLE_NATS_PID ]] || stop_pid "$SINGLE_NATS_PID" nats-server 15
    if ((PG_STARTED)); then pg_stop "$RUN_DIR/pg" || true; fi
    if [[ ${LATCH_PG_DATA:-} == /var/tmp/latch-*/bench-run-*/pg ]]; then
        rm -rf -- "$LATCH_PG_DATA"
        rmdir -- "$(dirname -- "$LATCH_PG_DATA")" 2>/dev/null || true
    fi
    rm -rf -- "$RUN_DIR"
    if ((rc == 0)); then log "results in $OUT"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Remove what earlier runs that were killed outright (no cleanup) left behind.
for d in "$ROOT"/.local/bench-run-*/; do
    d=${d%/}
    [[ -d $d && $d != "$RUN_DIR" ]] || continue
    owner=$(cat "$d/owner.pid" 2>/dev/null || true)
    if [[ -n $owner ]] && pid_alive "$owner"; then continue; fi
    [[ -n $owner || -n $(find "$d" -maxdepth 0 -mmin +10) ]] || continue
    log "removing $d, left by an earlier run"
    pg_stop "$d/pg" || true
    alt=$(_pg_fallback_dir "$d/pg")
    [[ -d $alt ]] && rm -rf -- "$alt"
    rm -rf -- "$d"
done

PG_STARTED=1
pg_start "$RUN_DIR/pg"
nats_start "$RUN_DIR/nats"
cp "$RUN_DIR/nats/nats.conf" "$OUT/raw/nats.conf"

psql_su() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U latch -d latch "$@"; }
"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U latch -d postgres -c 'CREATE DATABASE latch'
export LATCH_DATABASE_URL="postgres://latch_api@127.0.0.1:$PGPORT/latch"
export LATCH_MIGRATION_DATABASE_URL="postgres://latch@127.0.0.1:$PGPORT/latch"
export LATCH_NATS_URL
export LATCH_LOG_FORMAT=json
"$LATCH_BIN" migrate --app-login latch_api --relay-login latch_relay --operator-login latch_ops --worker-login latch_worker >"$LOGS/migrate.log" 2>&1 || {
    cat "$LOGS/migrate.log" >&2
    die "latch migrate failed"
}

log "seeding the bench site: $DOORS doors with a reader each, $HOLDERS card holders"
psql_su -v doors="$DOORS" -v holders="$HOLDERS" -f bench/seed.sql >/dev/null
KEYS=$RUN_DIR/keys.env
{
    for ((i = 1; i <= DOORS; i++)); do echo "LATCH_DEMO_READER_KEY_$i=lrk_bench_$i"; done
    for ((i = 1; i <= HOLDERS; i++)); do echo "LATCH_DEMO_CARD_$i=BENCH-$i"; done
} >"$KEYS"

# The disk's sync latency, which bounds both servers' durable writes (full runs only).
fsync_fact=
if ((!SMOKE)); then
    "$PG_BIN/pg_test_fsync" -s 1 -f "$RUN_DIR/fsync.test" >"$RAW/pg_test_fsync.txt" 2>&1 || true
    rm -f -- "$RUN_DIR/fsync.test"
    fsync_fact=$(awk '/one 8kB write/ { one = 1 } one && $1 == "fdatasync" { printf "fdatasync of one 8 kB write: %s ops/s (%s µs), pg_test_fsync", $2, $4; exit }' "$RAW/pg_test_fsync.txt")
fi
"${BENCH_PY[@]}" machine --out "$OUT/machine.json" --root "$ROOT" --mode "$MODE" \
    --pg-bin "$PG_BIN" --nats-server "$NATS_SERVER_BIN" "disk_sync=${fsync_fact:-not measured}" \
    "command=./deploy/local/bench.sh${ARGS[*]:+ ${ARGS[*]}}" "reps=$REPS" "busy_at_start=${busy:-none}" \
    "settings=$PROFILE build; reps $REPS, ${WARMUP} s warm-up + ${DURATION} s measured per run; $DOORS doors/readers, $HOLDERS holders; PostgreSQL fsync on, synchronous_commit on; nats-server sync_interval always; latch defaults (pool 16, HTTP workers = cores)"

# --- helpers -------------------------------------------------------------------------------
now() { date +%s.%N; }
# Float arithmetic: calc EXPR (awk syntax).
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
round() { awk "BEGIN { printf \"%d\", $1 + 0.5 }"; }

# spawn LOG CMD...: start CMD in its own session (so Ctrl-C reaches only this script, which
# stops things in order), output to LOG; the pid is in SPAWNED.
spawn() {
    local logfile=$1
    shift
    setsid "$@" >>"$logfile" 2>&1 &
    SPAWNED=$!
}

# Peak RSS of a process we started, recorded before it stops: record_memory ROLE PID.
record_memory() {
    local role=$1 pid=$2 kb
    kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    [[ -n $kb ]] || die "cannot read VmHWM of latch $role (pid $pid): it is not running"
    MEM_REPS[$role]=$((${MEM_REPS[$role]:-0} + 1))
    "${BENCH_PY[@]}" record --results "$RESULTS" --stage memory --case "$role" --rep "${MEM_REPS[$role]}" \
        "vmhwm_mb=$(calc "$kb / 1024")" "pid=$pid"
}
declare -A MEM_REPS=()

# wait_http SECONDS PID URL NAME LOG: until URL answers, or die if PID exits first.
wait_http() {
    local timeout=$1 pid=$2 url=$3 name=$4 logfile=$5
    if ! wait_for "$timeout" ready_or_gone "$pid" "$url" || ! pid_alive "$pid"; then
        tail -n 20 "$logfile" >&2 || true
        die "$name did not come up (see $logfile)"
    fi
}

start_api() {
    local attempt
    for attempt in 1 2 3 4 5; do
        API_ADDR="127.0.0.1:$(free_port)"
        # Capacity is measured here, so the per-reader and per-token rate limits are off
        # (a few load-generating readers stand in for many real ones).
        spawn "$LOGS/api.log" env LATCH_HTTP_ADDR="$API_ADDR" LATCH_RATE_READER_PER_MINUTE=0 \
            LATCH_RATE_TOKEN_PER_MINUTE=0 "$LATCH_BIN" api
        API_PID=$SPAWNED
        if wait_for 30 ready_or_gone "$API_PID" "http://$API_ADDR/readyz" && pid_alive "$API_PID"; then
            API_URL="http://$API_ADDR"
            log "latch api is up on $API_URL (pid $API_PID)"
            return 0
        fi
        wait "$API_PID" 2>/dev/null || true
        API_PID=
        grep -qi 'address already in use' "$LOGS/api.log" || break
        warn "$API_ADDR was taken; retrying (attempt $attempt of 5)"
    done
    tail -n 20 "$LOGS/api.log" >&2 || true
    die "latch api did not start (see $LOGS/api.log)"
}

start_relay() {
    RELAY_ADMIN="127.0.0.1:$(free_port)"
    spawn "$LOGS/relay.log" env LATCH_ADMIN_ADDR="$RELAY_ADMIN" \
        LATCH_DATABASE_URL="postgres://latch_relay@127.0.0.1:$PGPORT/latch" "$LATCH_BIN" relay
    RELAY_PID=$SPAWNED
    # Polled every 10 ms (not wait_for's 200 ms): the drain is timed from this moment.
    local deadline=$((SECONDS + 30))
    until http_ok "http://$RELAY_ADMIN/healthz"; do
        if ! pid_alive "$RELAY_PID" || ((SECONDS >= deadline)); then
            tail -n 20 "$LOGS/relay.log" >&2 || true
            die "latch relay did not come up (see $LOGS/relay.log)"
        fi
        sleep 0.01
    done
}

stop_relay() {
    record_memory relay "$RELAY_PID"
    stop_pid "$RELAY_PID" "latch relay" 20
    RELAY_PID=
}

# Standard Webhooks: whsec_ and the key in base64 (32 bytes).
BENCH_WEBHOOK_SECRET=whsec_YmVuY2gtd2ViaG9vay1zaWduaW5nLWtleS0zMmJ5dGU=
start_sim() {
    local attempt
    for attempt in 1 2 3; do
        SIM_ADDR="127.0.0.1:$(free_port)"
        SIM_ADMIN="127.0.0.1:$(free_port)"
        spawn "$LOGS/sim.log" "$SIM_BIN" legacy --addr "$SIM_ADDR" --admin-addr "$SIM_ADMIN" \
            --tna-key bench-tna-key --webhook-secret "$BENCH_WEBHOOK_SECRET"
        SIM_PID=$SPAWNED
        if wait_for 30 ready_or_gone "$SIM_PID" "http://$SIM_ADMIN/healthz" && pid_alive "$SIM_PID"; then
            return 0
        fi
        wait "$SIM_PID" 2>/dev/null || true
        SIM_PID=
    done
    tail -n 20 "$LOGS/sim.log" >&2 || true
    die "latch-sim legacy did not start (see $LOGS/sim.log)"
}

start_worker() {
    WORKER_ADMIN="127.0.0.1:$(free_port)"
    # Both sinks on the simulator; rate limits lifted (the defaults, 200/s per sink, would
    # be the bottleneck of every load here), everything else at its default.
    spawn "$LOGS/worker.log" env LATCH_ADMIN_ADDR="$WORKER_ADMIN" \
        LATCH_SINKS_LEGACY_URL="http://$SIM_ADDR/tna/v2/punches" LATCH_SINKS_LEGACY_SECRET=bench-tna-key \
        LATCH_SINKS_WEBHOOKS_URL="http://$SIM_ADDR/webhooks/latch" LATCH_SINKS_WEBHOOKS_SECRET="$BENCH_WEBHOOK_SECRET" \
        LATCH_SINKS_LEGACY_RATE=100000 LATCH_SINKS_WEBHOOKS_RATE=100000 \
        "$LATCH_BIN" worker
    WORKER_PID=$SPAWNED
    wait_http 30 "$WORKER_PID" "http://$WORKER_ADMIN/healthz" "latch worker" "$LOGS/worker.log"
}

sim_faults() {
    curl -sf --noproxy '*' -X PUT "http://$SIM_ADMIN/faults" -H 'content-type: application/json' -d "$1" >/dev/null ||
        die "cannot set the simulator's faults to $1"
}

# Empty registry and outbox (the sequence is kept: the outbox id is the message id the
# stream deduplicates on), and a checkpoint, so that every run starts from the same state.
reset_tables() {
    psql_su -c 'TRUNCATE outbox, actions' -c 'CHECKPOINT' >/dev/null
}

outbox_status() {
    LATCH_DATABASE_URL="postgres://latch_ops@127.0.0.1:$PGPORT/latch" "$LATCH_BIN" outbox status --json 2>/dev/null || true
}
pending_of() { "${BENCH_PY[@]}" pending "$1" <<<"$2"; }

# Messages in the event stream (0 before the relay or the worker first created it).
stream_messages() {
    local status
    status=$(outbox_status)
    if [[ -z $status ]]; then echo 0; else pending_of stream "$status"; fi
}

# all_actions_published BEFORE: the event stream grew by one message per action since it held
# BEFORE messages (the registry was emptied then).
all_actions_published() {
    (($(stream_messages) - $1 == $(psql_su -tAc 'SELECT count(*) FROM actions')))
}

# True when nothing is waiting anywhere in the pipeline.
pipeline_idle() {
    local status
    status=$(outbox_status)
    [[ -n $status ]] || return 1
    (($(pending_of outbox "$status") == 0 && $(pending_of legacy "$status") == 0 &&
        $(pending_of webhooks "$status") == 0))
}

wait_idle() {
    local timeout=$1
    local deadline=$((SECONDS + timeout))
    until pipeline_idle; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# readers NAME ARGS...: one latch-load readers run as JSON in $RAW/NAME.json.
readers() {
    local name=$1
    shift
    "$LOAD_BIN" readers --url "$API_URL" --keys-file "$KEYS" --json "$@" \
        >"$RAW/$name.json" 2>"$LOGS/$name.log" || {
        tail -n 20 "$LOGS/$name.log" >&2
        die "latch-load readers failed ($name)"
    }
    printf '  %s: %s\n' "$name" "$("${BENCH_PY[@]}" summary "$RAW/$name.json")" >&2
}

# pgbench_run NAME ARGS...: pgbench's output in $RAW/NAME.txt, per-transaction logs under
# $RAW/NAME.* (removed once summarized). It logs in as the API's login (PGBENCH_USER: another),
# so that its statements pay the same privilege and row-policy checks as the API's.
pgbench_run() {
    local name=$1
    shift
    "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U "${PGBENCH_USER:-latch_api}" -n -M prepared "$@" latch \
        >"$RAW/$name.txt" 2>"$LOGS/$name.log" || {
        tail -n 20 "$LOGS/$name.log" >&2
        die "pgbench failed ($name)"
    }
}

# pgbench_statement STAGE SCRIPT C REP [ARGS...]: one of latch's statements, closed loop at
# concurrency C, from empty tables after a warm-up; recorded as STAGE, case cC (ARGS go to
# bench.py pgbench).
pgbench_statement() {
    local stage=$1 script=$2 c=$3 rep=$4
    shift 4
    local name="${stage}_c${c}_r${rep}" threads=$((c < 2 ? c : 2))
    reset_tables
    pgbench_run "$name.warmup" -f "$script" -c "$c" -j "$threads" -T "$WARMUP"
    pgbench_run "$name" -f "$script" -c "$c" -j "$threads" -T "$DURATION" -l --log-prefix="$RAW/$name"
    "${BENCH_PY[@]}" pgbench --results "$RESULTS" --stage "$stage" --case "c$c" --rep "$rep" \
        --stdout "$RAW/$name.txt" --log-prefix "$RAW/$name" "$@" "concurrency=$c"
}

# CPU time (clock ticks) of one process, 0 when it is gone.
proc_ticks() { if [[ -n $1 ]]; then awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; else echo 0; fi; }

# cpu_snapshot FILE: the CPU time used so far by every process of the stack (PostgreSQL:
# the postmaster and its backends), and by this script's children (the load generator).
cpu_snapshot() {
    local postmaster pg child workers=0 pid
    postmaster=$(head -n 1 "$LATCH_PG_DATA/postmaster.pid")
    pg=$(proc_ticks "$postmaster")
    for child in $(pgrep -P "$postmaster"); do pg=$((pg + $(proc_ticks "$child"))); done
    {
        echo "wall $(now)"
        echo "clk_tck $(getconf CLK_TCK)"
        echo "api $(proc_ticks "$API_PID")"
        echo "postgres $pg"
        echo "relay $(proc_ticks "$RELAY_PID")"
        echo "nats $(proc_ticks "$LATCH_NATS_PID")"
        for pid in "$WORKER_PID" "${SCALE_PIDS[@]}"; do
            [[ -z $pid ]] || workers=$((workers + $(proc_ticks "$pid")))
        done
        echo "worker $workers"
        echo "sim $(proc_ticks "$SIM_PID")"
        # `times` in this shell (not in a pipeline's subshell, which has no children yet).
        times >"$1.times"
        echo "harness $(tail -n 1 "$1.times")"
    } >"$1"
    rm -f -- "$1.times"
}

declare -A STAGE_SECONDS=()
BUSY_SEEN=''
begin_stage() {
    STAGE=$1
    STAGE_START=$SECONDS
    log "stage: $1"
    # Builds running meanwhile make a stage's numbers noisy: remember where they were seen.
    if pgrep -x 'cargo|rustc|cc1|ld' >/dev/null 2>&1; then
        warn "other builds are running during stage \"$1\""
        BUSY_SEEN+="${BUSY_SEEN:+; }$1"
    fi
}
end_stage() { STAGE_SECONDS[$STAGE]=$((SECONDS - STAGE_START)); }

start_api
echo "$API_URL" >"$RUN_DIR/api_url"

# --- 1 + 2: the write path ---------------------------------------------------------------------
# statement_logging_is VALUE: a new session sees log_min_duration_statement = VALUE.
statement_logging_is() { [[ $(psql_su -tAc 'SHOW log_min_duration_statement') == "$1" ]]; }
# logged_since OFFSET TEXT: PostgreSQL's log holds TEXT after byte OFFSET.
logged_since() { grep -qF -- "$2" < <(tail -c "+$(($1 + 1))" "$LATCH_PG_DATA/log"); }

# capture_statement KIND ENDPOINT CARD OUT: latch's statement for one request to ENDPOINT,
# exactly as the API sends it: log every statement for a moment, send the request, and build
# the pgbench script OUT from what PostgreSQL executed.
capture_statement() {
    local kind=$1 endpoint=$2 card=$3 out=$4 log_offset answer action_id
    psql_su -c "ALTER SYSTEM SET log_min_duration_statement = 0" -c "SELECT pg_reload_conf()" >/dev/null
    # A new session sees the setting once the postmaster has reloaded it; by then it has
    # signalled the API's sessions, which take it up before their next statement.
    wait_for 10 statement_logging_is 0 || die "PostgreSQL did not take up log_min_duration_statement = 0"
    log_offset=$(stat -c %s "$LATCH_PG_DATA/log")
    answer=$(curl -sf --noproxy '*' -X POST "$API_URL$endpoint" -H 'Authorization: Bearer lrk_bench_1' \
        -H 'Content-Type: application/json' -d "{\"card_id\":\"$card\"}") || die "the first $kind failed"
    action_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["action_id"])' "$answer")
    # The statement's log entry names the action id among its parameters.
    wait_for 10 logged_since "$log_offset" "$action_id" || die "PostgreSQL did not log the $kind statement"
    psql_su -c "ALTER SYSTEM RESET log_min_duration_statement" -c "SELECT pg_reload_conf()" >/dev/null
    "${BENCH_PY[@]}" statement-script --kind "$kind" --log "$LATCH_PG_DATA/log" --offset "$log_offset" \
        --key lrk_bench_1 --card "$card" --action-id "$action_id" \
        --key-prefix lrk_bench_ --card-prefix BENCH- --readers "$DOORS" --holders "$HOLDERS" \
        --out "$out" >"$LOGS/$kind-script.log"
}

begin_stage "capture the unlock and check-in statements"
UNLOCK_SQL=$RAW/unlock.pgbench.sql
CHECKIN_SQL=$RAW/check-in.pgbench.sql
capture_statement unlock /v1/unlock BENCH-3 "$UNLOCK_SQL"
capture_statement check-in /v1/check-ins BENCH-3 "$CHECKIN_SQL"
# Each script must do what the API does: one action and one outbox row per transaction
# (a check-in of a deactivated holder, 1 in 50, records nothing, as in the API).
reset_tables
pgbench_run pgbench-check -f "$UNLOCK_SQL" -c 1 -t 20
[[ $(psql_su -tAc "SELECT format('%s %s', (SELECT count(*) FROM actions), (SELECT count(*) FROM outbox))") == "20 20" ]] ||
    die "the pgbench unlock script did not write one action and one outbox row per transaction"
reset_tables
pgbench_run pgbench-check -f "$CHECKIN_SQL" -c 1 -t 50
written=$(psql_su -tAc "SELECT format('%s %s %s', (SELECT count(*) FROM actions WHERE kind = 'check_in'), (SELECT count(*) FROM outbox), (SELECT count(*) FROM presence))")
read -r checkins outbox_rows present <<<"$written"
((checkins >= 40 && checkins == outbox_rows && present >= 1)) ||
    die "the pgbench check-in script did not write one check-in, its outbox row and presence per transaction ($written of 50)"
end_stage

if want write; then
    begin_stage "write path (pgbench vs latch API)"
    for c in "${CONCURRENCIES[@]}"; do
        for ((rep = 1; rep <= REPS; rep++)); do
            # pgbench and the API alternate, so drift in the machine hits both alike.
            for endpoint in unlock check-in; do
                script=$UNLOCK_SQL
                [[ $endpoint == unlock ]] || script=$CHECKIN_SQL
                tag=${endpoint//-/}
                pgbench_statement "pg_$tag" "$script" "$c" "$rep" --cdf "$RAW/pg_${tag}_c${c}_r${rep}.cdf.csv"
                reset_tables
                readers "api_${tag}_c${c}_r${rep}" --endpoint "$endpoint" --concurrency "$c" \
                    --warmup "${WARMUP}s" --duration "${DURATION}s" --histogram-out "$RAW/api_${tag}_c${c}_r${rep}.cdf.csv"
                "${BENCH_PY[@]}" record --results "$RESULTS" --stage "api_$tag" --case "c$c" --rep "$rep" \
                    --json "$RAW/api_${tag}_c${c}_r${rep}.json" "concurrency=$c"
            done
        done
    done

    # Open loop at half the API's best closed-loop rate, the same rate offered to pgbench
    # with as many connections as the API's pool has (its default, 16).
    best=$("${BENCH_PY[@]}" value --results "$RESULTS" --stage api_unlock --metric throughput_rps)
    OPEN_RATE=$(round "$best / 2")
    ((OPEN_RATE > 0)) || die "the API answered nothing in the closed loop"
    log "open loop at $OPEN_RATE unlocks/s (half of $best)"
    for ((rep = 1; rep <= REPS; rep++)); do
        reset_tables
        pgbench_run "pg_open_r${rep}.warmup" -f "$UNLOCK_SQL" -c "$API_POOL" -j 2 -R "$OPEN_RATE" -T "$WARMUP"
        pgbench_run "pg_open_r${rep}" -f "$UNLOCK_SQL" -c "$API_POOL" -j 2 -R "$OPEN_RATE" -T "$DURATION" \
            -l --log-prefix="$RAW/pg_open_r${rep}"
        "${BENCH_PY[@]}" pgbench --results "$RESULTS" --stage pg_open --case "r$OPEN_RATE" --rep "$rep" \
            --stdout "$RAW/pg_open_r${rep}.txt" --log-prefix "$RAW/pg_open_r${rep}" \
            --cdf "$RAW/pg_open_r${rep}.cdf.csv" "rate=$OPEN_RATE"
        reset_tables
        readers "api_open_r${rep}" --endpoint unlock --rate "$OPEN_RATE" \
            --warmup "${WARMUP}s" --duration "${DURATION}s" --histogram-out "$RAW/api_open_r${rep}.cdf.csv"
        "${BENCH_PY[@]}" record --results "$RESULTS" --stage api_open --case "r$OPEN_RATE" --rep "$rep" \
            --json "$RAW/api_open_r${rep}.json" "rate=$OPEN_RATE"
    done

    # A diagnostic, not latch's transaction: the same statement with the outbox trigger as
    # it was before the wake-up handshake (migrations/V2__outbox_order.sql: a NOTIFY from
    # every transaction), to show what the handshake saves (PostgreSQL serialises the
    # commits of notifying transactions). latch's trigger is restored right after.
    trigger_def=$(psql_su -tAc "SELECT pg_get_functiondef('latch_action_to_outbox'::regproc)")
    old_trigger=$(sed -n '/^CREATE OR REPLACE FUNCTION latch_action_to_outbox()/,/^\$\$;/p' migrations/V2__outbox_order.sql)
    [[ $old_trigger == *"PERFORM pg_notify('latch_outbox', '');"* ]] ||
        die "cannot find the per-transaction NOTIFY trigger in migrations/V2__outbox_order.sql"
    psql_su <<<"$old_trigger" >/dev/null
    # It runs as its owner since migrations/V5__least_privilege.sql, as latch's own does.
    psql_su -c "ALTER FUNCTION latch_action_to_outbox() SECURITY DEFINER SET search_path = public, pg_temp" >/dev/null
    for ((rep = 1; rep <= REPS; rep++)); do
        pgbench_statement pg_notify_each "$UNLOCK_SQL" "$NOTIFY_C" "$rep"
    done
    psql_su <<<"$trigger_def;" >/dev/null
    [[ $(psql_su -tAc "SELECT pg_get_functiondef('latch_action_to_outbox'::regproc)") == "$trigger_def" ]] ||
        die "could not restore the outbox trigger"
    end_stage
fi

# --- 2b: one reader floods, another unlocks ----------------------------------------------------
# A second API with per-reader rate limits on (the first has them off, to measure capacity):
# reader 2 unlocks at a steady rate, alone and then while reader 1 sends as fast as 16
# connections can (most of it answered 429). Its p99 is compared between the two.
if want limits; then
    begin_stage limits
    LIMIT_PER_MINUTE=1200 LIMIT_BURST=20 NEIGHBOUR_RATE=15 FLOOD_C=16
    LIMITED_ADDR="127.0.0.1:$(free_port)"
    spawn "$LOGS/api_limited.log" env LATCH_HTTP_ADDR="$LIMITED_ADDR" \
        LATCH_RATE_READER_PER_MINUTE="$LIMIT_PER_MINUTE" LATCH_RATE_READER_BURST="$LIMIT_BURST" \
        "$LATCH_BIN" api
    LIMITED_PID=$SPAWNED
    wait_for 30 ready_or_gone "$LIMITED_PID" "http://$LIMITED_ADDR/readyz" && pid_alive "$LIMITED_PID" ||
        die "the rate-limited latch api did not start (see $LOGS/api_limited.log)"
    for ((rep = 1; rep <= REPS; rep++)); do
        reset_tables
        API_URL="http://$LIMITED_ADDR" readers "limits_quiet_r$rep" --reader-key lrk_bench_2 \
            --endpoint unlock --rate "$NEIGHBOUR_RATE" --warmup "${WARMUP}s" --duration "${DURATION}s"
        "${BENCH_PY[@]}" record --results "$RESULTS" --stage limits_quiet --case "r$NEIGHBOUR_RATE" \
            --rep "$rep" --json "$RAW/limits_quiet_r$rep.json" "rate=$NEIGHBOUR_RATE" \
            "limit_per_minute=$LIMIT_PER_MINUTE"
        reset_tables
        "$LOAD_BIN" readers --url "http://$LIMITED_ADDR" --reader-key lrk_bench_1 --keys-file "$KEYS" \
            --json --endpoint unlock --concurrency "$FLOOD_C" --duration "$((WARMUP + DURATION + 1))s" \
            >"$RAW/limits_flooder_r$rep.json" 2>"$LOGS/limits_flooder_r$rep.log" &
        LOAD_PID=$!
        API_URL="http://$LIMITED_ADDR" readers "limits_flood_r$rep" --reader-key lrk_bench_2 \
            --endpoint unlock --rate "$NEIGHBOUR_RATE" --warmup "${WARMUP}s" --duration "${DURATION}s"
        wait "$LOAD_PID" || die "the flooding reader failed (see $LOGS/limits_flooder_r$rep.log)"
        LOAD_PID=
        "${BENCH_PY[@]}" record --results "$RESULTS" --stage limits_flood --case "r$NEIGHBOUR_RATE" \
            --rep "$rep" --json "$RAW/limits_flood_r$rep.json" --json "flooder=$RAW/limits_flooder_r$rep.json" \
            "rate=$NEIGHBOUR_RATE" "limit_per_minute=$LIMIT_PER_MINUTE"
    done
    stop_pid "$LIMITED_PID" "the rate-limited latch api" 20
    LIMITED_PID=
    end_stage
fi

# --- 3: JetStream's limit --------------------------------------------------------------------
if want jetstream || want relay; then
    begin_stage "JetStream raw publishing"
    # Messages as big as latch's envelopes: the mean of real ones, built by the trigger.
    if [[ $(psql_su -tAc 'SELECT count(*) FROM outbox') == 0 ]]; then
        psql_su -v rows=1000 -f bench/fill_outbox.sql >/dev/null
    fi
    ENVELOPE_SIZE=$(psql_su -tAc 'SELECT round(avg(octet_length(payload::text)))::int FROM outbox')
    log "latch's envelopes weigh $ENVELOPE_SIZE bytes on average"
    js_cases=("atomic-${RELAY_BATCH}x1:atomic --batch $RELAY_BATCH --in-flight 1")
    if want jetstream; then
        # Throughput (many in flight), the latency floor of one publish awaited alone (what
        # a relay round waits for at low load) and ten in flight (a small batch's segment).
        js_cases=("single-1000:single --in-flight 1000" "single-1:single --in-flight 1"
            "single-10:single --in-flight 10"
            "atomic-1x1:atomic --batch 1 --in-flight 1" "${js_cases[@]}"
            "atomic-${RELAY_BATCH}x4:atomic --batch $RELAY_BATCH --in-flight 4")
    fi
    for ((rep = 1; rep <= REPS; rep++)); do
        for js_case in "${js_cases[@]}"; do
            name=${js_case%%:*}
            # shellcheck disable=SC2086 # the mode's flags are words
            "$LOAD_BIN" jetstream ${js_case#*:} --url "$LATCH_NATS_URL" --size "$ENVELOPE_SIZE" \
                --warmup "${WARMUP}s" --duration "${DURATION}s" --json \
                >"$RAW/js_${name}_r${rep}.json" 2>"$LOGS/js_${name}_r${rep}.log" || {
                tail -n 20 "$LOGS/js_${name}_r${rep}.log" >&2
                die "latch-load jetstream failed ($name)"
            }
            "${BENCH_PY[@]}" record --results "$RESULTS" --stage js --case "$name" --rep "$rep" \
                --json "$RAW/js_${name}_r${rep}.json"
            printf '  jetstream %s rep %s: %s\n' "$name" "$rep" "$("${BENCH_PY[@]}" summary "$RAW/js_${name}_r${rep}.json")" >&2
        done
    done
    end_stage
fi

# --- 4: the relay draining a pre-filled outbox ----------------------------------------------
# Before the pipeline, whose backlog leaves PostgreSQL and the stream busy for a while.
if want relay; then
    begin_stage "relay drain"
    for ((rep = 1; rep <= REPS; rep++)); do
        # PostgreSQL's side alone: the relay's claim + delete, one client, batches of 500.
        reset_tables
        psql_su -v rows="$RELAY_ROWS" -f bench/fill_outbox.sql >/dev/null
        psql_su -c 'VACUUM ANALYZE outbox' -c 'CHECKPOINT' >/dev/null
        PGBENCH_USER=latch_relay pgbench_run "pg_claim_r${rep}" -f bench/relay_claim_delete.sql -c 1 -t "$((RELAY_ROWS / RELAY_BATCH))"
        [[ $(psql_su -tAc 'SELECT count(*) FROM outbox') == 0 ]] || die "pgbench's claim + delete left rows behind"
        "${BENCH_PY[@]}" pgbench --results "$RESULTS" --stage pg_claim --case "batch$RELAY_BATCH" --rep "$rep" \
            --stdout "$RAW/pg_claim_r${rep}.txt" --rows-per-tx "$RELAY_BATCH" "rows=$RELAY_ROWS"

        # The relay itself, from ready to an empty outbox.
        reset_tables
        t_fill=$(now)
        psql_su -v rows="$RELAY_ROWS" -f bench/fill_outbox.sql >/dev/null
        fill_s=$(calc "$(now) - $t_fill")
        psql_su -c 'VACUUM ANALYZE outbox' -c 'CHECKPOINT' >/dev/null
        stream_before=$(stream_messages)
        t_start=$(now)
        start_relay
        t_ready=$(now)
        deadline=$((SECONDS + 600))
        until [[ $(psql_su -tAc 'SELECT count(*) FROM outbox') == 0 ]]; do
            ((SECONDS < deadline)) || die "the relay did not drain $RELAY_ROWS rows within 600 s"
            pid_alive "$RELAY_PID" || die "latch relay exited while draining (see $LOGS/relay.log)"
            sleep 0.1
        done
        # The end: when the server stored the last message (the DELETE follows within
        # a round trip), read from its monitoring endpoint, not from our 100 ms polling.
        t_empty=$("${BENCH_PY[@]}" stream-last --monitor "$NATS_MONITOR_URL" --stream LATCH_EVENTS)
        # One message per action: the filled rows, and any event recorded meanwhile, which
        # the relay may still be publishing.
        if ! wait_for 30 all_actions_published "$stream_before"; then
            die "the stream grew by $(($(stream_messages) - stream_before)) messages for $(psql_su -tAc 'SELECT count(*) FROM actions') actions"
        fi
        stop_relay
        rate=$(calc "$RELAY_ROWS / ($t_empty - $t_ready)")
        "${BENCH_PY[@]}" record --results "$RESULTS" --stage relay_drain --case "batch$RELAY_BATCH" --rep "$rep" \
            "rows=$RELAY_ROWS" "rows_per_s=$rate" "drain_s=$(calc "$t_empty - $t_ready")" \
            "startup_s=$(calc "$t_ready - $t_start")" "rows_per_s_from_process_start=$(calc "$RELAY_ROWS / ($t_empty - $t_start)")" "fill_rows_per_s=$(calc "$RELAY_ROWS / $fill_s")"
        printf '  relay rep %s: %s rows in %ss: %s rows/s\n' "$rep" "$RELAY_ROWS" "$(calc "$t_empty - $t_ready")" "$rate" >&2
    done
    end_stage
fi

# --- 5: the pipeline ---------------------------------------------------------------------------
if want pipeline; then
    begin_stage "pipeline (api -> relay -> worker -> sinks)"
    reset_tables
    start_sim
    start_relay
    start_worker
    # The basis of the offered loads: the check-in rate the API sustained in stage 2.
    if checkin_max=$("${BENCH_PY[@]}" value --results "$RESULTS" --stage api_checkin --metric throughput_rps 2>/dev/null); then
        :
    else
        checkin_max=2000
        warn "no check-in rate measured (stage write skipped); taking $checkin_max/s as the API's max"
    fi
    loads=()
    for share in "${PIPE_SHARES[@]}"; do
        load=$(round "$checkin_max * $share / 100")
        # A share within 5% of the targets' 1,000/s is measured once, at 1,000/s.
        ((load < 950 || load > 1050)) || load=1000
        loads+=("$load")
    done
    loads+=(1000)
    mapfile -t loads < <(printf '%s\n' "${loads[@]}" | sort -n -u)
    log "offered loads: ${loads[*]} events/s (shares of $checkin_max check-ins/s, and 1,000/s)"
    for load in "${loads[@]}"; do
        for ((rep = 1; rep <= REPS; rep++)); do
            name="pipe_r${load}_r${rep}"
            readers "$name.warmup" --endpoint presence-mix --rate "$load" --duration "${WARMUP}s"
            wait_idle 120 || die "the pipeline did not catch up within 120 s after the warm-up at $load/s"
            curl -sf --noproxy '*' "http://$RELAY_ADMIN/metrics" >"$RAW/$name.relay.before.prom"
            curl -sf --noproxy '*' "http://$WORKER_ADMIN/metrics" >"$RAW/$name.worker.before.prom"
            cpu_snapshot "$RAW/$name.cpu.before"
            readers "$name" --endpoint presence-mix --rate "$load" --duration "${DURATION}s" --seed "$rep"
            cpu_snapshot "$RAW/$name.cpu.load-end"
            caught_up=1
            wait_idle 300 || caught_up=0
            cpu_snapshot "$RAW/$name.cpu.after"
            curl -sf --noproxy '*' "http://$RELAY_ADMIN/metrics" >"$RAW/$name.relay.after.prom"
            curl -sf --noproxy '*' "http://$WORKER_ADMIN/metrics" >"$RAW/$name.worker.after.prom"
            "${BENCH_PY[@]}" prom-delta --before "$RAW/$name.relay.before.prom" --after "$RAW/$name.relay.after.prom" \
                --metric latch_relay_commit_to_stream_seconds >"$RAW/$name.stream.json"
            "${BENCH_PY[@]}" prom-delta --before "$RAW/$name.relay.before.prom" --after "$RAW/$name.relay.after.prom" \
                --metric latch_relay_publish_duration_seconds >"$RAW/$name.publish.json"
            "${BENCH_PY[@]}" prom-delta --before "$RAW/$name.relay.before.prom" --after "$RAW/$name.relay.after.prom" \
                --metric latch_relay_batch_size_rows --raw >"$RAW/$name.batch.json"
            "${BENCH_PY[@]}" cpu-delta --before "$RAW/$name.cpu.before" --load-end "$RAW/$name.cpu.load-end" \
                --after "$RAW/$name.cpu.after" --events "$RAW/$name.json" >"$RAW/$name.cpu.json"
            for sink in legacy webhooks; do
                "${BENCH_PY[@]}" prom-delta --before "$RAW/$name.worker.before.prom" --after "$RAW/$name.worker.after.prom" \
                    --metric latch_worker_commit_to_delivered_seconds --label "sink=$sink" >"$RAW/$name.$sink.json"
            done
            "${BENCH_PY[@]}" record --results "$RESULTS" --stage pipeline --case "r$load" --rep "$rep" \
                --json "api=$RAW/$name.json" --json "stream=$RAW/$name.stream.json" \
                --json "legacy=$RAW/$name.legacy.json" --json "webhooks=$RAW/$name.webhooks.json" \
                --json "publish=$RAW/$name.publish.json" --json "batch=$RAW/$name.batch.json" \
                --json "cpu=$RAW/$name.cpu.json" \
                "offered=$load" "caught_up=$caught_up"
            printf '  pipeline %s/s rep %s: stream %s | legacy %s | webhooks %s\n' "$load" "$rep" \
                "$(cat "$RAW/$name.stream.json")" "$(cat "$RAW/$name.legacy.json")" "$(cat "$RAW/$name.webhooks.json")" >&2
            ((caught_up)) || die "the pipeline did not catch up within 300 s at $load/s"
            curl -sf --noproxy '*' -X POST "http://$SIM_ADMIN/admin/reset" >/dev/null || true
        done
    done
    end_stage

    # The legacy system down for OUTAGE seconds with the load kept on, then back.
    begin_stage "legacy outage and backlog drain"
    outage_rate=$(round "$checkin_max / 2")
    ((outage_rate < 1000)) || outage_rate=1000
    threshold=$((outage_rate / 10 > 50 ? outage_rate / 10 : 50))
    for ((rep = 1; rep <= REPS; rep++)); do
        name="outage_r${rep}"
        wait_idle 120 || die "the pipeline is not idle before the outage"
        total=$((OUTAGE_LEAD + OUTAGE + OUTAGE_TAIL))
        t_load=$(now)
        spawn "$LOGS/$name.log" "$LOAD_BIN" readers --url "$API_URL" --keys-file "$KEYS" --json \
            --endpoint presence-mix --rate "$outage_rate" --duration "${total}s" --seed "$((100 + rep))"
        LOAD_PID=$SPAWNED
        sleep "$OUTAGE_LEAD"
        sim_faults '{"down": true}'
        t_down=$(now)
        sleep "$OUTAGE"
        sim_faults '{}'
        t_clear=$(now)
        peak=0 t_peak=$t_clear t_drained='' t_webhooks=''
        deadline=$((SECONDS + DRAIN_MAX))
        while ((SECONDS < deadline)); do
            status=$(outbox_status)
            if [[ -n $status ]]; then
                t=$(now)
                p=$(pending_of legacy "$status")
                w=$(pending_of webhooks "$status")
                if ((p > peak)); then peak=$p t_peak=$t; fi
                if [[ -z $t_webhooks ]] && ((w <= threshold)); then t_webhooks=$t; fi
                if ((p <= threshold)); then
                    t_drained=$t
                    [[ -n $t_webhooks ]] && break
                fi
            fi
            sleep 0.5
        done
        t_load_end=$(calc "$t_load + $total")
        if pid_alive "$LOAD_PID"; then kill -INT "$LOAD_PID" 2>/dev/null || true; fi
        wait "$LOAD_PID" 2>/dev/null || true
        LOAD_PID=
        [[ -n $t_drained ]] || die "the legacy backlog did not drain within ${DRAIN_MAX}s of the end of the outage"
        drain_s=$(calc "$t_drained - $t_peak")
        arrived=$(calc "$outage_rate * (($t_load_end < $t_drained ? $t_load_end : $t_drained) - $t_peak)")
        if awk "BEGIN { exit !($drain_s > 0) }"; then
            net=$(calc "$peak / $drain_s")
            gross=$(calc "($peak + ($arrived > 0 ? $arrived : 0)) / $drain_s")
        else
            net=0 gross=0
        fi
        "${BENCH_PY[@]}" record --results "$RESULTS" --stage outage --case "r$outage_rate" --rep "$rep" \
            "rate=$outage_rate" "outage_s=$(calc "$t_clear - $t_down")" "peak_backlog=$peak" \
            "resume_s=$(calc "$t_peak - $t_clear")" "recovery_s=$(calc "$t_drained - $t_clear")" \
            "webhooks_recovery_s=$(calc "${t_webhooks:-$t_drained} - $t_clear")" \
            "drain_rate_net=$net" "drain_rate_gross=$gross" "threshold=$threshold"
        printf '  outage rep %s: backlog %s, drained %ss after the clear (net %s/s, gross %s/s)\n' \
            "$rep" "$peak" "$(calc "$t_drained - $t_clear")" "$net" "$gross" >&2
        wait_idle 300 || die "the pipeline did not go idle after the outage"
        curl -sf --noproxy '*' -X POST "http://$SIM_ADMIN/admin/reset" >/dev/null || true
    done
    record_memory worker "$WORKER_PID"
    stop_pid "$WORKER_PID" "latch worker" 20
    WORKER_PID=
    stop_relay
    stop_pid "$SIM_PID" "latch-sim legacy" 20
    SIM_PID=
    end_stage
fi

# --- 6: the event feed -------------------------------------------------------------------------
# Server-Sent Events: FEED_CLIENTS clients on the one API while readers check in at FEED_RATE;
# beside them a JetStream consumer reads the stream directly (the latency the API's fan-out
# adds to). Then paging: GET /v1/events through everything in the stream, against an ordered
# consumer reading it all (the limit of a page read).
if want feed; then
    begin_stage "event feed (Server-Sent Events and pages)"
    reset_tables
    start_relay
    stream_before=$(stream_messages)
    psql_su -v rows="$FEED_ROWS" -f bench/fill_outbox.sql >/dev/null
    wait_for 600 all_actions_published "$stream_before" ||
        die "the relay did not publish the feed stage's $FEED_ROWS events"
    for ((rep = 1; rep <= REPS; rep++)); do
        "$LOAD_BIN" feed raw --nats-url "$LATCH_NATS_URL" --json \
            >"$RAW/feed_raw_r$rep.json" 2>"$LOGS/feed_raw_r$rep.log" ||
            die "latch-load feed raw failed (see $LOGS/feed_raw_r$rep.log)"
        "$LOAD_BIN" feed pull --url "$API_URL" --token lat_bench_admin --limit 1000 --json \
            >"$RAW/feed_pull_r$rep.json" 2>"$LOGS/feed_pull_r$rep.log" ||
            die "latch-load feed pull failed (see $LOGS/feed_pull_r$rep.log)"
        "${BENCH_PY[@]}" record --results "$RESULTS" --stage feed_pull --case limit1000 --rep "$rep" \
            --json "$RAW/feed_pull_r$rep.json" --json "raw=$RAW/feed_raw_r$rep.json"
        printf '  feed pages rep %s: %s\n' "$rep" "$(tail -n 1 "$RAW/feed_pull_r$rep.json")" >&2

        # The readers run through the clients' connecting, warm-up and measured part.
        "$LOAD_BIN" readers --url "$API_URL" --keys-file "$KEYS" --json --endpoint check-in \
            --rate "$FEED_RATE" --duration "$((WARMUP + DURATION + 30))s" \
            >"$RAW/feed_readers_r$rep.json" 2>"$LOGS/feed_readers_r$rep.log" &
        LOAD_PID=$!
        "$LOAD_BIN" feed stream --url "$API_URL" --token lat_bench_admin --clients "$FEED_CLIENTS" \
            --warmup "${WARMUP}s" --duration "${DURATION}s" --api-pid "$API_PID" \
            --nats-url "$LATCH_NATS_URL" --json \
            >"$RAW/feed_stream_r$rep.json" 2>"$LOGS/feed_stream_r$rep.log" ||
            die "latch-load feed stream failed (see $LOGS/feed_stream_r$rep.log)"
        kill "$LOAD_PID" 2>/dev/null || true
        wait "$LOAD_PID" 2>/dev/null || true
        LOAD_PID=
        "${BENCH_PY[@]}" record --results "$RESULTS" --stage feed_stream --case "c$FEED_CLIENTS" --rep "$rep" \
            --json "$RAW/feed_stream_r$rep.json" "rate=$FEED_RATE"
        printf '  feed stream rep %s: %s\n' "$rep" "$(tail -n 1 "$RAW/feed_stream_r$rep.json")" >&2
    done
    stop_relay
    end_stage
fi

# --- 7: webhook endpoints --------------------------------------------------------------------
# The worker delivering to many endpoints (migration V8, worker/src/endpoints): a worker with
# a database and no sinks, endpoints written straight into webhook_endpoints
# (bench/webhook_endpoints.sql), each healthy one a named subscriber of the simulator
# (ok-N). Every case starts a fresh worker on fresh endpoints.
WH_SETTINGS="no sinks, LATCH_DATABASE_URL a login of latch_deliverer; LATCH_WEBHOOKS_ALLOW_HTTP=true, LATCH_WEBHOOKS_ALLOW_ADDRESSES=loopback; every other LATCH_WEBHOOKS_* at its default (timeout 5s, concurrency 4 lanes per endpoint, max_attempts 8, refresh 1s, max_reads 8, disable_after 3d); each endpoint rate_per_second 1000, every kind and site"
start_endpoints_worker() {
    local logfile=$1
    WORKER_ADMIN="127.0.0.1:$(free_port)"
    spawn "$logfile" env LATCH_ADMIN_ADDR="$WORKER_ADMIN" \
        LATCH_DATABASE_URL="postgres://latch_worker@127.0.0.1:$PGPORT/latch" \
        LATCH_WEBHOOKS_ALLOW_HTTP=true LATCH_WEBHOOKS_ALLOW_ADDRESSES=loopback \
        "$LATCH_BIN" worker
    WORKER_PID=$SPAWNED
    wait_http 60 "$WORKER_PID" "http://$WORKER_ADMIN/healthz" "latch worker (endpoints)" "$logfile"
}

stop_endpoints_worker() {
    record_memory "$1" "$WORKER_PID"
    stop_pid "$WORKER_PID" "latch worker (endpoints)" 20
    WORKER_PID=
}

# TCP connections this machine opened so far (connect()s: /proc/net/snmp Tcp ActiveOpens).
tcp_active_opens() {
    awk '$1 == "Tcp:" && !n { for (i = 2; i <= NF; i++) col[$i] = i; n = 1; next }
         $1 == "Tcp:" { print $col["ActiveOpens"]; exit }' /proc/net/snmp
}

# proc_mb FIELD PID: VmRSS or VmHWM of PID in MB.
proc_mb() { awk -v f="$1:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$2/status" 2>/dev/null; }

worker_metrics() {
    curl -sf --noproxy '*' "http://$WORKER_ADMIN/metrics" >"$1" || die "cannot read the worker's metrics"
}
# deliveries FILE OUTCOME: latch_worker_deliveries_total{sink="endpoints",outcome=OUTCOME}.
deliveries() {
    "${BENCH_PY[@]}" prom-value --file "$1" --metric latch_worker_deliveries_total \
        --label sink=endpoints --label "outcome=$2" --default 0
}

# wh_wait_rest N SECONDS: until the worker delivers to N endpoints and none is catching up
# (the gauge is set once per refresh, every second); WH_REST_AT is when that was seen.
wh_wait_rest() {
    local want=$1 deadline=$((SECONDS + $2)) metrics delivering catching
    while ((SECONDS < deadline)); do
        pid_alive "$WORKER_PID" || return 1
        if metrics=$(curl -sf --noproxy '*' "http://$WORKER_ADMIN/metrics"); then
            delivering=$(awk '$1 == "latch_webhook_endpoints{state=\"delivering\"}" { print $2 }' <<<"$metrics")
            catching=$(awk '$1 == "latch_webhook_endpoints{state=\"catching_up\"}" { print $2 }' <<<"$metrics")
            if [[ $delivering == "$want" && $catching == 0 ]]; then
                WH_REST_AT=$(now)
                return 0
            fi
        fi
        sleep 0.2
    done
    return 1
}

wh_applied() { "${BENCH_PY[@]}" subscribers sum --admin "http://$SIM_ADMIN" --prefix ok- --field applied; }
actions_count() { psql_su -tAc 'SELECT count(*) FROM actions'; }

# wh_wait_drained HEALTHY SECONDS: until the healthy subscribers (ok-*) have applied every
# recorded event each (every event is routed to every endpoint); WH_DRAINED_AT is when that
# was seen (polled every second).
wh_wait_drained() {
    local healthy=$1 deadline=$((SECONDS + $2)) expected
    WH_DRAINED_AT=
    while ((SECONDS < deadline)); do
        pid_alive "$WORKER_PID" || die "the worker exited while delivering to the endpoints (see $LOGS)"
        expected=$(($(actions_count) * healthy))
        if (($(wh_applied) >= expected)); then
            WH_DRAINED_AT=$(now)
            return 0
        fi
        sleep 1
    done
    return 1
}

seed_endpoints() {
    psql_su -v count="$1" -v url_prefix="$2" -v description="$3" -v kinds="$4" \
        -v secret="$BENCH_WEBHOOK_SECRET" -f bench/webhook_endpoints.sql >/dev/null
}
clear_endpoints() { psql_su -c 'TRUNCATE webhook_attempts, webhook_endpoints' >/dev/null; }

# worker_log_summary LOG OUT: the worker's warnings and errors, counted by message.
worker_log_summary() {
    python3 - "$1" >"$2" <<'PY'
import collections, json, sys
counts = collections.Counter()
with open(sys.argv[1], encoding="utf-8", errors="replace") as src:
    for line in src:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        level = entry.get("level", "")
        if level in ("WARN", "ERROR"):
            message = entry.get("fields", {}).get("message", "") or entry.get("message", "")
            counts[f"{level} {message}"] += 1
print(json.dumps({"warn": sum(n for k, n in counts.items() if k.startswith("WARN")),
                  "error": sum(n for k, n in counts.items() if k.startswith("ERROR")),
                  "messages": dict(counts.most_common(10))}))
PY
}

# webhooks_load CASE HEALTHY DOWN REP RATE: HEALTHY endpoints on the simulator and DOWN on a
# closed port, every event routed to each, while readers check in at RATE/s for DURATION
# seconds; then the healthy ones' backlog is left to drain (at most WH_DRAIN_MAX seconds).
webhooks_load() {
    local case=$1 healthy=$2 down=$3 rep=$4 rate=$5
    local name="webhooks_${case}_r${rep}" wlog closed t_start startup_s actions0 actions1 events
    local applied0 applied1 applied2 rss_load rss_end hwm time_wait caught_up t_end
    local ok_load ok_all retry_all dead_all load_s total_s backlog drain_s t_before t_load_end opens0 opens1
    wlog=$LOGS/$name.worker.log
    clear_endpoints
    reset_tables
    curl -sf --noproxy '*' -X POST "http://$SIM_ADMIN/admin/reset" >/dev/null || die "cannot reset the simulator"
    seed_endpoints "$healthy" "http://$SIM_ADDR/webhooks/endpoints/ok-" "bench healthy" ''
    if ((down)); then
        # A port nothing listens on: every call is refused at once.
        closed=$(free_port)
        seed_endpoints "$down" "http://127.0.0.1:$closed/webhooks/endpoints/down-" "bench down" ''
    fi
    t_start=$(now)
    start_endpoints_worker "$wlog"
    wh_wait_rest "$((healthy + down))" "$WH_START_MAX" ||
        die "the worker did not reach rest with $((healthy + down)) endpoints within ${WH_START_MAX}s (see $wlog)"
    startup_s=$(calc "$WH_REST_AT - $t_start")
    readers "$name.warmup" --endpoint check-in --rate "$rate" --duration "${WARMUP}s" --seed "$((300 + rep))"
    wh_wait_drained "$healthy" "$WH_DRAIN_MAX" ||
        warn "the healthy endpoints did not catch up within ${WH_DRAIN_MAX}s of the warm-up; measuring anyway"

    worker_metrics "$RAW/$name.before.prom"
    cpu_snapshot "$RAW/$name.cpu.before"
    applied0=$(wh_applied)
    actions0=$(actions_count)
    opens0=$(tcp_active_opens)
    t_before=$(now)
    readers "$name" --endpoint check-in --rate "$rate" --duration "${DURATION}s" --seed "$rep"
    t_load_end=$(now)
    opens1=$(tcp_active_opens)
    worker_metrics "$RAW/$name.load-end.prom"
    cpu_snapshot "$RAW/$name.cpu.load-end"
    applied1=$(wh_applied)
    actions1=$(actions_count)
    rss_load=$(proc_mb VmRSS "$WORKER_PID")
    # Connections to the simulator waiting out TIME_WAIT (60 s): how many the worker's
    # calls opened and closed lately.
    time_wait=$(ss -Htan state time-wait "( dport = :${SIM_ADDR##*:} or sport = :${SIM_ADDR##*:} )" 2>/dev/null | wc -l || echo 0)
    caught_up=1
    wh_wait_drained "$healthy" "$WH_DRAIN_MAX" || caught_up=0
    t_end=${WH_DRAINED_AT:-$(now)}
    worker_metrics "$RAW/$name.after.prom"
    cpu_snapshot "$RAW/$name.cpu.after"
    applied2=$(wh_applied)
    rss_end=$(proc_mb VmRSS "$WORKER_PID")
    hwm=$(proc_mb VmHWM "$WORKER_PID")
    "${BENCH_PY[@]}" subscribers sum --admin "http://$SIM_ADMIN" --prefix ok- >"$RAW/$name.subscribers.json"

    events=$((actions1 - actions0))
    ok_load=$(($(deliveries "$RAW/$name.load-end.prom" ok) - $(deliveries "$RAW/$name.before.prom" ok)))
    ok_all=$(($(deliveries "$RAW/$name.after.prom" ok) - $(deliveries "$RAW/$name.before.prom" ok)))
    retry_all=$(($(deliveries "$RAW/$name.after.prom" retry) - $(deliveries "$RAW/$name.before.prom" retry)))
    dead_all=$(($(deliveries "$RAW/$name.after.prom" dead) - $(deliveries "$RAW/$name.before.prom" dead)))
    load_s=$(calc "$t_load_end - $t_before")
    total_s=$(calc "$t_end - $t_before")
    backlog=$((actions1 * healthy - applied1))
    drain_s=$(calc "$t_end - $t_load_end")
    "${BENCH_PY[@]}" prom-delta --before "$RAW/$name.before.prom" --after "$RAW/$name.after.prom" \
        --metric latch_worker_commit_to_delivered_seconds --label sink=endpoints >"$RAW/$name.latency.json"
    "${BENCH_PY[@]}" prom-delta --before "$RAW/$name.before.prom" --after "$RAW/$name.after.prom" \
        --metric latch_worker_delivery_duration_seconds --label sink=endpoints >"$RAW/$name.call.json"
    "${BENCH_PY[@]}" cpu-use --before "$RAW/$name.cpu.before" --after "$RAW/$name.cpu.after" \
        --count "$((ok_all > 0 ? ok_all : 1))" >"$RAW/$name.cpu.json"
    "${BENCH_PY[@]}" cpu-use --before "$RAW/$name.cpu.before" --after "$RAW/$name.cpu.load-end" \
        >"$RAW/$name.cpu-load.json"
    psql_su -tA -v since="$t_before" -v until="$t_load_end" -v description='bench healthy' \
        -f bench/webhook_latency.sql >"$RAW/$name.attempts.json"
    worker_log_summary "$wlog" "$RAW/$name.worker-log.json"
    "${BENCH_PY[@]}" record --results "$RESULTS" --stage webhooks --case "$case" --rep "$rep" \
        --json "latency=$RAW/$name.latency.json" --json "call=$RAW/$name.call.json" \
        --json "cpu=$RAW/$name.cpu.json" --json "cpu_load=$RAW/$name.cpu-load.json" \
        --json "attempts=$RAW/$name.attempts.json" --json "readers=$RAW/$name.json" \
        --json "subscribers=$RAW/$name.subscribers.json" --json "log=$RAW/$name.worker-log.json" \
        "endpoints=$((healthy + down))" "healthy=$healthy" "down=$down" "rate=$rate" \
        "offered_deliveries_per_s=$((rate * healthy))" "events=$events" \
        "deliveries_load=$ok_load" "deliveries_all=$ok_all" "retries=$retry_all" "dead_lettered=$dead_all" \
        "load_s=$load_s" "total_s=$total_s" \
        "deliveries_per_s_load=$(calc "$ok_load / $load_s")" \
        "applied_per_s_load=$(calc "($applied1 - $applied0) / $load_s")" \
        "deliveries_per_s_to_drained=$(calc "$ok_all / $total_s")" \
        "applied_all=$((applied2 - applied0))" "expected_all=$((events * healthy))" \
        "backlog_at_load_end=$backlog" "caught_up=$caught_up" "drain_s=$drain_s" \
        "drain_rate=$(calc "$backlog / ($drain_s > 0 ? $drain_s : 1)")" \
        "startup_s=$startup_s" "rss_mb_load_end=$rss_load" "rss_mb_end=$rss_end" "vmhwm_mb=$hwm" \
        "time_wait_sockets=$time_wait" "tcp_opens_per_s_load=$(calc "($opens1 - $opens0) / $load_s")" \
        "tcp_opens_per_delivery_load=$(calc "($opens1 - $opens0) / ($ok_load > 0 ? $ok_load : 1)")" \
        "settings=$WH_SETTINGS"
    printf '  webhooks %s rep %s: %s deliveries/s during the load (offered %s), backlog %s, %s after the load: latency %s\n' \
        "$case" "$rep" "$(calc "$ok_load / $load_s")" "$((rate * healthy))" "$backlog" \
        "$( ((caught_up)) && echo "drained ${drain_s}s" || echo "NOT drained within ${WH_DRAIN_MAX}s")" \
        "$(cat "$RAW/$name.latency.json")" >&2
    ((caught_up)) || warn "the healthy endpoints' backlog did not drain within ${WH_DRAIN_MAX}s after the load ($name; see $wlog)"
    stop_endpoints_worker "worker endpoints-$case"
}

# webhooks_idle COUNT REP: COUNT endpoints whose filter no event matches, no load: the time
# from the worker's start to rest, then its RSS and CPU over DURATION seconds.
webhooks_idle() {
    local count=$1 rep=$2 name="webhooks_idle_e${1}_r${2}" wlog t_start t_up
    wlog=$LOGS/$name.worker.log
    clear_endpoints
    seed_endpoints "$count" "http://$SIM_ADDR/webhooks/endpoints/idle-" "bench idle" '{reader_tamper_restored}'
    t_start=$(now)
    start_endpoints_worker "$wlog"
    t_up=$(now)
    wh_wait_rest "$count" "$WH_START_MAX" ||
        die "the worker did not reach rest with $count idle endpoints within ${WH_START_MAX}s (see $wlog)"
    # Settled: the first save of every endpoint's position is behind it.
    sleep "$WARMUP"
    cpu_snapshot "$RAW/$name.cpu.before"
    sleep "$DURATION"
    cpu_snapshot "$RAW/$name.cpu.after"
    worker_metrics "$RAW/$name.prom"
    "${BENCH_PY[@]}" cpu-use --before "$RAW/$name.cpu.before" --after "$RAW/$name.cpu.after" >"$RAW/$name.cpu.json"
    worker_log_summary "$wlog" "$RAW/$name.worker-log.json"
    "${BENCH_PY[@]}" record --results "$RESULTS" --stage webhooks_idle --case "e$count" --rep "$rep" \
        --json "cpu=$RAW/$name.cpu.json" --json "log=$RAW/$name.worker-log.json" \
        "endpoints=$count" "startup_s=$(calc "$WH_REST_AT - $t_start")" "ready_s=$(calc "$t_up - $t_start")" \
        "rss_mb=$(proc_mb VmRSS "$WORKER_PID")" "vmhwm_mb=$(proc_mb VmHWM "$WORKER_PID")" \
        "settings=$WH_SETTINGS"
    printf '  webhooks idle %s endpoints rep %s: at rest %ss after start, RSS %s MB, %s\n' "$count" "$rep" \
        "$(calc "$WH_REST_AT - $t_start")" "$(proc_mb VmRSS "$WORKER_PID")" "$(cat "$RAW/$name.cpu.json")" >&2
    stop_endpoints_worker "worker endpoints-idle-$count"
}

if want webhooks; then
    begin_stage "webhook endpoints"
    start_sim
    start_relay
    "${BENCH_PY[@]}" subscribers create --admin "http://$SIM_ADMIN" --prefix ok- --count "$WH_ENDPOINTS" \
        --secret "$BENCH_WEBHOOK_SECRET"
    for ((rep = 1; rep <= REPS; rep++)); do
        webhooks_load healthy "$WH_ENDPOINTS" 0 "$rep" "$WH_RATE"
        webhooks_load down "$((WH_ENDPOINTS - WH_DOWN))" "$WH_DOWN" "$rep" "$WH_RATE"
        # Below the worker's capacity, where a faulty neighbour's cost would show in the
        # healthy endpoints' latency rather than drown in a backlog.
        webhooks_load healthy_low "$WH_ENDPOINTS" 0 "$rep" "$WH_LOW_RATE"
        webhooks_load down_low "$((WH_ENDPOINTS - WH_DOWN))" "$WH_DOWN" "$rep" "$WH_LOW_RATE"
        webhooks_idle 0 "$rep"
        webhooks_idle "$WH_IDLE" "$rep"
    done
    clear_endpoints
    stop_relay
    stop_pid "$SIM_PID" "latch-sim legacy" 20
    SIM_PID=
    end_stage
fi

# --- 8: partitioned workers, and the price of replication --------------------------------------
# Delivery of a backlog (SCALE_EVENTS check-ins and check-outs of SCALE_HOLDERS holders, put in
# a fresh stream of 8 partitions by `latch-load backlog`) to both sinks answering after 5 ms,
# by 1, 2 and 4 partitioned workers; the rate is taken between 10% and 90% of the deliveries.
if want scale; then
    begin_stage "partitioned workers"
    start_sim
    faults='{"legacy": {"latency": {"kind": "fixed", "ms": 5}}, "webhooks": {"latency": {"kind": "fixed", "ms": 5}}}'
    for ((rep = 1; rep <= REPS; rep++)); do
        for workers in 1 2 4; do
            name="scale_w${workers}_r${rep}"
            "$LOAD_BIN" backlog --url "$LATCH_NATS_URL" --events "$SCALE_EVENTS" --holders "$SCALE_HOLDERS" \
                >"$RAW/$name.backlog.json" 2>"$LOGS/$name.backlog.log" || die "latch-load backlog failed (see $LOGS/$name.backlog.log)"
            curl -sf --noproxy '*' -X POST "http://$SIM_ADMIN/admin/reset" >/dev/null || die "cannot reset the simulator"
            sim_faults "$faults"
            cpu_snapshot "$RAW/$name.cpu.before"
            SCALE_PIDS=()
            for ((w = 1; w <= workers; w++)); do
                spawn "$LOGS/$name.worker$w.log" env LATCH_ADMIN_ADDR="127.0.0.1:$(free_port)" \
                    LATCH_WORKER_PARTITIONED=true LATCH_WORKER_LEASE=2s \
                    LATCH_SINKS_LEGACY_URL="http://$SIM_ADDR/tna/v2/punches" LATCH_SINKS_LEGACY_SECRET=bench-tna-key \
                    LATCH_SINKS_WEBHOOKS_URL="http://$SIM_ADDR/webhooks/latch" LATCH_SINKS_WEBHOOKS_SECRET="$BENCH_WEBHOOK_SECRET" \
                    LATCH_SINKS_LEGACY_RATE=100000 LATCH_SINKS_WEBHOOKS_RATE=100000 \
                    "$LATCH_BIN" worker
                SCALE_PIDS+=("$SPAWNED")
            done
            "${BENCH_PY[@]}" delivery-rate --stats "http://$SIM_ADMIN/stats" --expect "$((2 * SCALE_EVENTS))" \
                --timeout 600 >"$RAW/$name.rate.json" || die "the workers did not deliver the backlog (see $LOGS/$name.worker*.log)"
            cpu_snapshot "$RAW/$name.cpu.after"
            for pid in "${SCALE_PIDS[@]}"; do stop_pid "$pid" "latch worker" 20; done
            SCALE_PIDS=()
            "${BENCH_PY[@]}" cpu-use --before "$RAW/$name.cpu.before" --after "$RAW/$name.cpu.after" \
                --count "$((2 * SCALE_EVENTS))" >"$RAW/$name.cpu.json"
            "${BENCH_PY[@]}" record --results "$RESULTS" --stage scale --case "w$workers" --rep "$rep" \
                --json "rate=$RAW/$name.rate.json" --json "cpu=$RAW/$name.cpu.json" \
                "workers=$workers" "events=$SCALE_EVENTS" "holders=$SCALE_HOLDERS" "partitions=8" "sink_ms=5"
            printf '  %s worker(s) rep %s: %s\n' "$workers" "$rep" "$(cat "$RAW/$name.rate.json")" >&2
        done
    done
    stop_pid "$SIM_PID" "latch-sim legacy" 20
    SIM_PID=
    end_stage
fi

# The relay draining RELAY_ROWS rows into a 3-node JetStream cluster with 3 replicas, against
# the same drain into the single server (stage relay, or measured here if it was skipped).
if want replication; then
    begin_stage "replication (relay into a 3-node cluster, R3)"
    relay_drain() {
        local case=$1 rep=$2 t_ready t_empty rate
        reset_tables
        psql_su -v rows="$RELAY_ROWS" -f bench/fill_outbox.sql >/dev/null
        psql_su -c 'VACUUM ANALYZE outbox' -c 'CHECKPOINT' >/dev/null
        start_relay
        t_ready=$(now)
        local deadline=$((SECONDS + 600))
        until [[ $(psql_su -tAc 'SELECT count(*) FROM outbox') == 0 ]]; do
            ((SECONDS < deadline)) || die "the relay did not drain $RELAY_ROWS rows within 600 s ($case)"
            pid_alive "$RELAY_PID" || die "latch relay exited while draining (see $LOGS/relay.log)"
            sleep 0.05
        done
        t_empty=$(now)
        stop_relay
        rate=$(calc "$RELAY_ROWS / ($t_empty - $t_ready)")
        "${BENCH_PY[@]}" record --results "$RESULTS" --stage replication --case "$case" --rep "$rep" \
            "rows=$RELAY_ROWS" "rows_per_s=$rate" "drain_s=$(calc "$t_empty - $t_ready")"
        printf '  relay into %s rep %s: %s rows/s\n' "$case" "$rep" "$rate" >&2
    }
    for ((rep = 1; rep <= REPS; rep++)); do relay_drain single "$rep"; done
    SINGLE_NATS=("$LATCH_NATS_URL" "$LATCH_NATS_PID" "$NATS_MONITOR_URL" "$LATCH_NATS_DIR")
    SINGLE_NATS_PID=$LATCH_NATS_PID
    LATCH_NATS_PID=''
    nats_cluster_start "$RUN_DIR/nats-r3" 3
    for ((rep = 1; rep <= REPS; rep++)); do relay_drain r3 "$rep"; done
    nats_stop
    LATCH_NATS_URL=${SINGLE_NATS[0]} LATCH_NATS_PID=${SINGLE_NATS[1]}
    NATS_MONITOR_URL=${SINGLE_NATS[2]} LATCH_NATS_DIR=${SINGLE_NATS[3]}
    SINGLE_NATS_PID=''
    export LATCH_NATS_URL NATS_MONITOR_URL
    unset LATCH_NATS_REPLICAS
    end_stage
fi

# --- 9: memory, report, plots --------------------------------------------------------------
begin_stage "report"
record_memory api "$API_PID"
stop_pid "$API_PID" "latch api" 20
API_PID=
for stage_name in "${!STAGE_SECONDS[@]}"; do
    "${BENCH_PY[@]}" record --results "$RESULTS" --stage timing --case "$stage_name" --rep 1 \
        "seconds=${STAGE_SECONDS[$stage_name]}"
done

# matplotlib for the plots: already importable, or in a private venv, or (where Debian's
# python3-venv is missing) installed with pip into .local/pydeps, or Debian's package.
PLOT_PY=python3
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    venv=$ROOT/.local/bench-venv
    if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
        PLOT_PY=$venv/bin/python
    elif [[ -d $ROOT/.local/pydeps ]] && PYTHONPATH=$ROOT/.local/pydeps python3 -c 'import matplotlib' 2>/dev/null; then
        export PYTHONPATH=$ROOT/.local/pydeps
    else
        log "installing matplotlib for the plots (into $venv)"
        rm -rf -- "$venv"
        if python3 -m venv "$venv" >/dev/null 2>&1 &&
            "$venv/bin/python" -m pip install -q --disable-pip-version-check matplotlib >&2; then
            PLOT_PY=$venv/bin/python
        else
            rm -rf -- "$venv"
            warn "no python3 venv here; installing matplotlib with pip into .local/pydeps"
            if python3 -m pip install -q --disable-pip-version-check --target "$ROOT/.local/pydeps" matplotlib >&2; then
                export PYTHONPATH=$ROOT/.local/pydeps
            else
                apt_install python3-matplotlib
            fi
        fi
    fi
fi
python3 - "$OUT/machine.json" "${BUSY_SEEN:-none}" <<'PY'
import json, os, sys
path, busy = sys.argv[1], sys.argv[2]
with open(path) as src:
    facts = json.load(src)
facts["load_average_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
facts["builds_seen_during"] = busy
with open(path, "w") as out:
    json.dump(facts, out, indent=2)
PY
"$PLOT_PY" "$ROOT/bench/plot.py" --dir "$OUT"
"${BENCH_PY[@]}" report --dir "$OUT" >/dev/null
end_stage

log "stage timings (s): $(for s in "${!STAGE_SECONDS[@]}"; do printf '%s=%s; ' "$s" "${STAGE_SECONDS[$s]}"; done)"
sed -n '1,/^## 1/p' "$OUT/results.md" | sed '$d'
log "tables: $OUT/results.md; plots: $OUT/plots/"
