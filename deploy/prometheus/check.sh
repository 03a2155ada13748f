#!/usr/bin/env bash
# Check the monitoring files without running anything of latch: the Prometheus configuration
# and alert rules (promtool check config / check rules), the rules' unit tests (promtool test
# rules alerts_test.yml), and the Grafana dashboards and provisioning (check_dashboards.py,
# then promtool parses every dashboard expression). Installs Debian's prometheus package if
# promtool is missing, and python3 if that is. deploy/local/test.sh runs this as one step;
# cli/tests/stack/observability.rs then evaluates the same expressions against a live stack.
set -euo pipefail

HERE=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../local/lib.sh
source "$HERE/../local/lib.sh"
ROOT=$(latch_root)
cd "$ROOT"

ensure_prometheus
if ! command -v python3 >/dev/null 2>&1; then
    log "python3 not found; installing Debian's python3"
    apt_install python3
fi

TMP=$(mktemp -d)
trap 'rm -rf -- "$TMP"' EXIT

PROM_DIR=deploy/prometheus
RULES=$ROOT/$PROM_DIR/alerts.yml

log "promtool check config (a copy of $PROM_DIR/prometheus.yml with the rules' absolute path)"
# The copy lives elsewhere, so its relative rule path must become absolute.
sed "s|^  - alerts.yml\$|  - $RULES|" "$PROM_DIR/prometheus.yml" >"$TMP/prometheus.yml"
grep -qF -- "- $RULES" "$TMP/prometheus.yml" ||
    die "$PROM_DIR/prometheus.yml no longer lists '  - alerts.yml' under rule_files; update check.sh"
"$PROMTOOL_BIN" check config "$TMP/prometheus.yml"

log "promtool check rules $PROM_DIR/alerts.yml"
"$PROMTOOL_BIN" check rules "$RULES"

log "every alert has unit tests in $PROM_DIR/alerts_test.yml"
missing=0
while read -r name; do
    if ! grep -qE "^\s*alertname:\s*$name\s*$" "$PROM_DIR/alerts_test.yml"; then
        printf 'error: alert %s has no test in %s\n' "$name" "$PROM_DIR/alerts_test.yml" >&2
        missing=1
    fi
done < <(sed -nE 's/^\s*-\s*alert:\s*([A-Za-z0-9_]+)\s*$/\1/p' "$RULES" | sort -u)
((missing == 0)) || die "untested alert rules"

log "promtool test rules $PROM_DIR/alerts_test.yml"
"$PROMTOOL_BIN" test rules "$PROM_DIR/alerts_test.yml"

log "Grafana dashboards and provisioning"
python3 "$PROM_DIR/check_dashboards.py" --provisioning grafana/provisioning \
    --rules-out "$TMP/dashboards.rules.yml" grafana/dashboards/*.json
log "promtool parses every dashboard expression"
"$PROMTOOL_BIN" check rules "$TMP/dashboards.rules.yml"

log "monitoring files OK"
