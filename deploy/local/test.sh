#!/usr/bin/env bash
# Run every check CI runs: formatting, lints, the Prometheus rules and Grafana dashboards, and
# the whole test suite, against a private PostgreSQL cluster and the nats-server and Prometheus
# binaries that this script provides (nothing of the machine's own).
# Extra arguments go to `cargo test`, e.g. deploy/local/test.sh -p latch-core.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(latch_root)
cd "$ROOT"

command -v cargo >/dev/null 2>&1 || die "cargo not found; install a Rust toolchain (https://rustup.rs)"

# A fresh machine may have none of these; these install what is missing.
ensure_postgres
ensure_nats_server
ensure_prometheus
ensure_schemathesis
ensure_standardwebhooks_py
ensure_chromium

# Remove what earlier runs that were killed outright (no cleanup) left behind: their clusters
# (stopped first) and directories. A run whose owner process still lives is left alone, and a
# directory without an owner file only once it is old (it may be a run just starting).
sweep_stale_runs() {
    local d owner alt
    for d in "$ROOT"/.local/test-run-*/; do
        [[ -d $d ]] || continue
        d=${d%/}
        owner=$(cat "$d/owner.pid" 2>/dev/null || true)
        if [[ -n $owner ]]; then
            ! pid_alive "$owner" || continue
        elif [[ -z $(find "$d" -maxdepth 0 -mmin +10) ]]; then
            continue
        fi
        log "removing $d, left by an earlier run"
        pg_stop "$d/pg" || true
        alt=$(_pg_fallback_dir "$d/pg")
        if [[ -d $alt ]]; then
            rm -rf -- "$alt"
            rmdir -- "$(dirname -- "$alt")" 2>/dev/null || true
        fi
        rm -rf -- "$d"
    done
}
sweep_stale_runs

# One throwaway cluster for the whole run; each test creates its own database in it.
mkdir -p .local
RUN_DIR=$(mktemp -d "$ROOT/.local/test-run-XXXXXX")
echo "$$" >"$RUN_DIR/owner.pid"
# mktemp makes it 0700; as root, PostgreSQL runs as another user, who must be able to enter it.
chmod 0755 "$RUN_DIR"

STEP_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Finish cleaning up even if the terminal or a pipe reading our output has gone.
    trap '' PIPE
    set +e
    # Interrupted in the middle of a step: stop all of it (cargo, test binaries, the servers
    # the tests started) before the database goes away under it.
    if [[ -n $STEP_PID ]]; then
        stop_group "$STEP_PID" "the interrupted step" TERM 30
    fi
    pg_stop "$RUN_DIR/pg" || true
    # The cluster may have gone to the /var/tmp fallback (see pg_start): remove that copy too.
    if [[ ${LATCH_PG_DATA:-} == /var/tmp/latch-*/test-run-*/pg ]]; then
        rm -rf -- "$LATCH_PG_DATA"
        rmdir -- "$(dirname -- "$LATCH_PG_DATA")" 2>/dev/null || true
    fi
    rm -rf -- "$RUN_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pg_start "$RUN_DIR/pg"

# What the Rust tests read: a superuser URL to create their databases from, and the nats-server
# binary each test starts its own server with.
export LATCH_TEST_PG_URL=$LATCH_PG_SUPERUSER_URL
export LATCH_NATS_SERVER=$NATS_SERVER_BIN
export PG_BIN
# The Prometheus that cli/tests/stack/observability.rs starts to evaluate the dashboards and rules.
export LATCH_PROMETHEUS_BIN=$PROMETHEUS_BIN
# The API's contract test (api/tests/api/contract.rs) runs it against the served document.
export LATCH_SCHEMATHESIS=$SCHEMATHESIS_BIN
# The worker's signature test verifies a captured webhook call with the reference Python package.
export LATCH_STANDARDWEBHOOKS_PY=$STANDARDWEBHOOKS_PY
# The browser test (cli/tests/stack/browser.rs) drives Debian's Chromium with them.
export CHROMIUM_BIN CHROMEDRIVER_BIN

# step TITLE CMD...: run one check; the first failure ends the run with that check's exit code.
step() {
    local title=$1 rc=0
    shift
    printf '\n==> %s\n    %s\n' "$title" "$*"
    # In the background and in its own process group, so that a Ctrl-C or TERM runs our trap
    # at once (bash defers traps until a foreground command ends) and the trap can stop the
    # whole step with one signal to the group.
    setsid "$@" &
    STEP_PID=$!
    wait "$STEP_PID" || rc=$?
    STEP_PID=
    if ((rc != 0)); then
        printf '\n==> FAILED: %s (exit %d)\n' "$title" "$rc" >&2
        exit "$rc"
    fi
}

step "formatting" cargo fmt --all -- --check
step "lints" cargo clippy --workspace --all-targets --locked -- -D warnings
step "alert rules and dashboards" deploy/prometheus/check.sh
# The Dockerfile, compose and Kubernetes files, offline (no container engine here); the
# self-test also breaks copies of them and expects each to be caught.
step "deployment files" deploy/check-deploy.sh --self-test
# Every member by default (the root manifest is a virtual workspace), or what the arguments
# select: --workspace would override a -p given to narrow the run.
step "tests" cargo test --locked "$@"
# The benchmark harness in its smoke mode (debug binaries, a few seconds a stage), so it
# cannot rot unnoticed; skipped when arguments narrow the run to some tests.
if [[ $# -eq 0 ]]; then
    step "benchmark harness (smoke)" deploy/local/bench.sh --smoke --dev
fi
printf '\n==> all checks passed\n'
