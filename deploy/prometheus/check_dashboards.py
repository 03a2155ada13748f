#!/usr/bin/env python3
"""Check the Grafana dashboards for what Grafana needs to load them, and collect their PromQL.

Usage: check_dashboards.py --provisioning DIR --rules-out FILE DASHBOARD.json...

For every dashboard: valid JSON; a uid (unique across dashboards), a title, a schemaVersion,
a version, time, templating and panels; every panel a built-in type (no external plugins),
a unique id, a gridPos inside the 24-column grid that overlaps no other panel; every
panel that queries names the provisioned Prometheus data source by its uid (read from
DIR/datasources/*.yml), as does each of its targets, which have a unique refId and a
non-empty `expr`; every `$variable` in an expression is Grafana's own ($__rate_interval,
$__interval, $__range) or defined in the dashboard's templating.

It also checks that DIR/dashboards/*.yml has a file provider, and writes every expression,
with Grafana's variables replaced by durations, as a recording rule to FILE, so that
`promtool check rules FILE` parses them all. Exits 1 listing every problem found.
Only the Python standard library is used.
"""

import argparse
import glob
import json
import os
import re
import sys

# Panel types that ship with Grafana (no plugin to install).
BUILTIN_PANELS = {
    "row", "timeseries", "stat", "gauge", "bargauge", "table", "state-timeline",
    "status-history", "text", "heatmap", "histogram", "piechart", "barchart", "logs",
    "news", "dashlist", "alertlist", "nodeGraph", "trend", "xychart", "canvas",
}
# Panel types that do not query a data source.
NO_QUERY_PANELS = {"row", "text", "news", "dashlist", "alertlist"}
# Grafana's own variables, and what stands in for them when the expression is parsed.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}
UID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
VARIABLE_RE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def yaml_values(path, key):
    """Values of `key: value` lines of a simple YAML file (no YAML library needed)."""
    values = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\s*-?\s*" + re.escape(key) + r":\s*(.+?)\s*$", line)
            if m and not line.lstrip().startswith("#"):
                values.append(m.group(1).strip("'\""))
    return values


def flatten(panels):
    """Panels, with those nested in collapsed rows."""
    for panel in panels:
        yield panel
        if panel.get("type") == "row":
            yield from flatten(panel.get("panels") or [])


def substitute(expr, defined):
    def replace(m):
        name = m.group(1) or m.group(2)
        if name in GRAFANA_VARIABLES:
            return GRAFANA_VARIABLES[name]
        return defined.get(name, m.group(0))
    return VARIABLE_RE.sub(replace, expr)


def check_dashboard(path, ds_uids, problems, rules):
    where = os.path.relpath(path)
    try:
        with open(path, encoding="utf-8") as f:
            board = json.load(f)
    except (OSError, ValueError) as e:
        problems.append(f"{where}: not valid JSON: {e}")
        return None
    if not isinstance(board, dict):
        problems.append(f"{where}: the top level is not an object")
        return None

    uid = board.get("uid")
    if not isinstance(uid, str) or not UID_RE.match(uid):
        problems.append(f"{where}: uid must be 1-40 characters of letters, digits, - and _ (got {uid!r})")
    for key, kind in (("title", str), ("schemaVersion", int), ("version", int), ("panels", list),
                      ("time", dict), ("templating", dict)):
        if not isinstance(board.get(key), kind) or (kind is str and not board.get(key)):
            problems.append(f"{where}: missing or invalid {key!r} (want {kind.__name__})")
    if problems and not isinstance(board.get("panels"), list):
        return uid
    if not board["panels"]:
        problems.append(f"{where}: no panels")

    # Template variables defined by the dashboard (replaced by a placeholder for parsing).
    defined = {}
    for var in (board.get("templating") or {}).get("list") or []:
        name = var.get("name")
        if name:
            defined[name] = ".*" if var.get("type") in ("query", "custom") else "x"
    # Data source variables would defeat the fixed uid; none are expected.

    ids = set()
    cells = {}
    for panel in flatten(board["panels"]):
        pid = panel.get("id")
        title = panel.get("title") or f"panel {pid}"
        pwhere = f"{where}: panel {title!r}"
        if not isinstance(pid, int):
            problems.append(f"{pwhere}: id must be an integer")
        elif pid in ids:
            problems.append(f"{pwhere}: id {pid} used twice")
        ids.add(pid)
        ptype = panel.get("type")
        if ptype not in BUILTIN_PANELS:
            problems.append(f"{pwhere}: type {ptype!r} is not a built-in Grafana panel")
        if ptype != "row" and not panel.get("title"):
            problems.append(f"{pwhere}: no title")

        pos = panel.get("gridPos")
        if not isinstance(pos, dict) or not all(isinstance(pos.get(k), int) for k in "hwxy"):
            problems.append(f"{pwhere}: gridPos needs integers h, w, x, y")
        elif pos["w"] < 1 or pos["h"] < 1 or pos["x"] < 0 or pos["y"] < 0 or pos["x"] + pos["w"] > 24:
            problems.append(f"{pwhere}: gridPos {pos} is outside the 24-column grid")
        else:
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    other = cells.setdefault((x, y), title)
                    if other != title:
                        problems.append(f"{pwhere}: overlaps panel {other!r} at column {x}, row {y}")
                        break
                else:
                    continue
                break

        if ptype in NO_QUERY_PANELS:
            continue
        ds = panel.get("datasource")
        if not isinstance(ds, dict) or ds.get("uid") not in ds_uids or ds.get("type") != "prometheus":
            problems.append(f"{pwhere}: datasource must be {{type: prometheus, uid: one of {sorted(ds_uids)}}}, got {ds!r}")
        targets = panel.get("targets")
        if not isinstance(targets, list) or not targets:
            problems.append(f"{pwhere}: no targets")
            continue
        refs = set()
        for target in targets:
            ref = target.get("refId")
            twhere = f"{pwhere} target {ref!r}"
            if not isinstance(ref, str) or not ref or ref in refs:
                problems.append(f"{twhere}: refId missing or used twice")
            refs.add(ref)
            tds = target.get("datasource")
            if tds is not None and (not isinstance(tds, dict) or tds.get("uid") not in ds_uids):
                problems.append(f"{twhere}: datasource {tds!r} is not the provisioned one")
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.append(f"{twhere}: no expr")
                continue
            for m in VARIABLE_RE.finditer(expr):
                name = m.group(1) or m.group(2)
                if name not in GRAFANA_VARIABLES and name not in defined:
                    problems.append(f"{twhere}: ${name} is neither Grafana's nor defined in templating")
            rules.append((f"{uid}/{pid}/{ref}", substitute(expr, defined)))
    return uid


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provisioning", required=True)
    parser.add_argument("--rules-out", required=True)
    parser.add_argument("dashboards", nargs="+")
    args = parser.parse_args()

    problems = []
    ds_files = sorted(glob.glob(os.path.join(args.provisioning, "datasources", "*.y*ml")))
    ds_uids = set()
    for path in ds_files:
        if "prometheus" not in yaml_values(path, "type"):
            problems.append(f"{path}: no data source of type prometheus")
        ds_uids.update(yaml_values(path, "uid"))
        if not any(u.startswith(("http", "$")) for u in yaml_values(path, "url")):
            problems.append(f"{path}: no url")
    if not ds_uids:
        problems.append(f"{args.provisioning}/datasources: no data source with a uid")
    providers = sorted(glob.glob(os.path.join(args.provisioning, "dashboards", "*.y*ml")))
    if not any("file" in yaml_values(p, "type") and yaml_values(p, "path") for p in providers):
        problems.append(f"{args.provisioning}/dashboards: no file provider with a path")

    rules = []
    uids = {}
    for path in args.dashboards:
        uid = check_dashboard(path, ds_uids, problems, rules)
        if uid in uids:
            problems.append(f"{path}: uid {uid!r} is also used by {uids[uid]}")
        uids[uid] = path

    with open(args.rules_out, "w", encoding="utf-8") as f:
        f.write("# Every dashboard expression as a recording rule, for `promtool check rules`.\n")
        f.write("groups:\n  - name: dashboards\n    rules:\n")
        for origin, expr in rules:
            # The rule's name says where the expression comes from: dashboard uid, panel id, refId.
            name = re.sub(r"[^A-Za-z0-9_:]", "_", origin.replace("/", ":panel_", 1).replace("/", ":"))
            f.write(f"      - record: dashboard:{name}\n")
            f.write(f"        expr: {json.dumps(expr)}\n")

    if problems:
        for p in problems:
            print(f"dashboard check: {p}", file=sys.stderr)
        return 1
    print(f"dashboards OK: {len(args.dashboards)} dashboard(s), {len(rules)} expression(s), data source uid(s) {sorted(ds_uids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
