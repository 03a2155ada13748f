#!/usr/bin/env python3
"""Helpers of deploy/local/bench.sh: everything that parses, computes or formats.

Standard library only (the plots, which need matplotlib, are in plot.py). Subcommands:

  statement-script  turn latch's unlock or check-in statement, captured from
                  PostgreSQL's log while the API served one request, into a pgbench script
  pgbench         read a pgbench run (its output and per-transaction logs) and append
                  one result line; writes the latency distribution as CSV
  record          append one result line from JSON files and key=value pairs
  prom-delta      quantiles of a Prometheus histogram between two /metrics snapshots
  cpu-delta       CPU time per event of every process of the stack during a load
  cpu-use         CPU time of every process of the stack between two snapshots (per
                  second, and per unit of work such as a delivery)
  prom-value      the sum of a counter's or gauge's samples in one /metrics snapshot
  subscribers     create the simulator's named webhook subscribers, or sum their counters
  pending         a sink's backlog from `latch outbox status --json`
  stream-last     when a stream stored its last message (epoch seconds), from /jsz
  summary         one line about a latch-load readers or jetstream JSON report
  value           a median (or the max of medians over cases) from the results
  machine         the machine facts (cores, CPU, versions, commit) as JSON
  report          results.jsonl + machine.json -> results.md (the tables and targets)

Results are JSON lines (results.jsonl), one per measured run: {"stage", "case", "rep",
...metrics}. Medians, minima and maxima over repetitions are taken in `report`.
"""

import argparse
import glob
import hashlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import urllib.request
from datetime import datetime, timezone


# --- small helpers ----------------------------------------------------------------------


def fail(message):
    print(f"bench.py: error: {message}", file=sys.stderr)
    sys.exit(1)


def append_result(path, record):
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record, sort_keys=True) + "\n")


def read_results(path):
    records = []
    if not os.path.exists(path):
        return records
    with open(path, encoding="utf-8") as src:
        for line in src:
            line = line.strip()
            if line:
                records.append(json.loads(line))
    return records


def parse_value(text):
    """key=value values: numbers become numbers, the rest stays text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def get_path(record, dotted):
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def nearest_rank(sorted_values, q):
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def quantile_steps():
    """Quantiles as HdrHistogram iterates them (5 steps per halving of 1 - q), then 1."""
    steps = []
    i = 0
    while True:
        q = 1.0 - 0.5 ** (i / 5.0)
        if q >= 0.99999:
            break
        steps.append(q)
        i += 1
    steps.append(1.0)
    return steps


def write_cdf(path, sorted_ms):
    """The same CSV as `latch-load readers --histogram-out x.csv`."""
    n = len(sorted_ms)
    with open(path, "w", encoding="utf-8") as out:
        out.write("value_ms,percentile,total_count\n")
        for q in quantile_steps():
            value = nearest_rank(sorted_ms, q)
            count = max(1, math.ceil(q * n)) if n else 0
            out.write(f"{value:.3f},{q * 100:.6f},{count}\n")


# --- statement-script -------------------------------------------------------------------

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def log_entries(path, offset):
    """PostgreSQL stderr log entries from byte `offset`: (first line, continuation lines)."""
    with open(path, "rb") as src:
        src.seek(offset)
        text = src.read().decode("utf-8", "replace")
    entries = []
    for line in text.splitlines():
        if LOG_LINE.match(line):
            entries.append([line, []])
        elif entries:
            # Continuation lines of a multi-line message start with a tab.
            entries[-1][1].append(line[1:] if line.startswith("\t") else line)
    return entries


PARAM = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')")
EXECUTE = re.compile(r"LOG:\s+duration: [\d.]+ ms\s+execute [^:]*:\s?(.*)$")


# What tells each reader statement apart among the statements that insert into actions.
STATEMENT_MARKERS = {"unlock": "verdict", "check-in": "INSERT INTO presence"}


def find_statement(entries, marker):
    """The last executed statement that inserts into actions and holds `marker`, and its
    parameters."""
    found = None
    for i, (first, rest) in enumerate(entries):
        match = EXECUTE.search(first)
        if not match:
            continue
        sql = "\n".join([match.group(1)] + rest).strip()
        if "INSERT INTO actions" not in sql or marker not in sql:
            continue
        params = {}
        for later_first, later_rest in entries[i + 1 : i + 3]:
            if "DETAIL:" in later_first and "parameters:" in later_first:
                text = " ".join([later_first] + later_rest)
                params = {int(n): v for n, v in PARAM.findall(text)}
                break
        found = (sql, params)
    return found


def psql(args, sql):
    command = [
        os.path.join(os.environ["PG_BIN"], "psql"),
        "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
        "-h", os.environ.get("PGHOST", "127.0.0.1"),
        "-p", os.environ["PGPORT"],
        "-U", os.environ.get("PGUSER", "latch"),
        "-d", args.db,
    ]
    done = subprocess.run(command, input=sql, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"psql failed: {done.stderr.strip()}")
    return done.stdout.strip()


def cmd_statement_script(args):
    kind = args.kind
    entries = log_entries(args.log, args.offset)
    found = find_statement(entries, STATEMENT_MARKERS[kind])
    if not found:
        fail(
            f"no executed {kind} statement inserting into actions in {args.log} after byte "
            f"{args.offset}; did the request reach PostgreSQL with log_min_duration_statement = 0?"
        )
    sql, params = found
    numbers = sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})
    if not numbers:
        fail(f"the captured {kind} statement has no parameters")
    missing = [n for n in numbers if n not in params]
    if missing:
        fail(f"no logged value for parameter(s) {missing} of the {kind} statement")
    # The parameter types PostgreSQL infers, exactly as for the API's own prepare.
    types_text = psql(
        args,
        f"PREPARE bench_statement AS {sql};\n"
        "SELECT array_to_string(parameter_types::text[], '|') FROM pg_prepared_statements "
        "WHERE name = 'bench_statement';\n",
    )
    types = types_text.split("|")
    if len(types) < max(numbers):
        fail(f"PostgreSQL reports {len(types)} parameter types for {max(numbers)} parameters")

    key_hash = "'\\x" + hashlib.sha256(args.key.encode()).hexdigest() + "'"
    roles = {}
    for n in numbers:
        value = params[n]
        if value == key_hash:
            roles[n] = "key"
        elif value == f"'{args.card}'":
            roles[n] = "card"
        elif value == f"'{args.action_id}'":
            roles[n] = "action_id"
    for role in ("key", "card", "action_id"):
        if role not in roles.values():
            fail(f"cannot tell which parameter of the {kind} statement is the {role}: {params}")

    expressions = {}
    for n in numbers:
        kind = types[n - 1]
        role = roles.get(n)
        if role == "key":
            value = f"sha256(convert_to('{args.key_prefix}' || :reader, 'UTF8'))"
        elif role == "card":
            value = f"('{args.card_prefix}' || :card)"
        elif role == "action_id":
            value = "gen_random_uuid()"
        else:
            value = params[n]
        expressions[n] = f"CAST({value} AS {kind})"

    body = re.sub(r"\$(\d+)", lambda m: expressions[int(m.group(1))], sql)
    if "$" in re.sub(r"'(?:[^']|'')*'", "", body):
        fail("a parameter placeholder is left in the pgbench statement")
    if ";" in body:
        fail(f"the {kind} statement holds a ';', which pgbench would split")
    with open(args.out, "w", encoding="utf-8") as out:
        out.write(
            f"-- latch's {kind} statement as the API ran it (captured from PostgreSQL's log by\n"
            "-- deploy/local/bench.sh), with pgbench variables for the reader key and the card;\n"
            "-- the key's SHA-256 is computed here instead of in the API.\n"
            f"\\set reader random(1, {args.readers})\n"
            f"\\set card random(1, {args.holders})\n"
            f"{body};\n"
        )
    summary = {
        "parameters": len(numbers),
        "types": types[: max(numbers)],
        "roles": {str(k): v for k, v in roles.items()},
        "others": {str(n): params[n] for n in numbers if n not in roles},
    }
    with open(args.out + ".json", "w", encoding="utf-8") as out:
        json.dump({"statement": sql, **summary}, out, indent=2)
    print(json.dumps(summary))


# --- pgbench ----------------------------------------------------------------------------


def parse_pgbench_output(text):
    result = {}
    patterns = {
        "tps": r"^tps = ([\d.]+)",
        "transactions": r"^number of transactions actually processed: (\d+)",
        "failed": r"^number of failed transactions: (\d+)",
        "latency_avg_ms": r"^latency average = ([\d.]+) ms",
        "schedule_lag_avg_ms": r"^rate limit schedule lag: avg ([\d.]+)",
        "clients": r"^number of clients: (\d+)",
    }
    for key, pattern in patterns.items():
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            result[key] = parse_value(match.group(1))
    if "tps" not in result:
        fail("no 'tps = ' line in the pgbench output")
    return result


def cmd_pgbench(args):
    with open(args.stdout, encoding="utf-8") as src:
        result = parse_pgbench_output(src.read())
    record = {"stage": args.stage, "case": args.case, "rep": args.rep, "tool": "pgbench"}
    record.update(result)
    record["throughput"] = result["tps"] * args.rows_per_tx
    if args.log_prefix:
        latencies = []
        failed = 0
        files = sorted(glob.glob(args.log_prefix + ".*"))
        if not files:
            fail(f"no pgbench log files {args.log_prefix}.*")
        for name in files:
            with open(name, encoding="utf-8") as src:
                for line in src:
                    fields = line.split()
                    if len(fields) < 3:
                        continue
                    try:
                        latencies.append(int(fields[2]) / 1000.0)
                    except ValueError:
                        failed += 1
        latencies.sort()
        if latencies:
            record["latency_ms"] = {
                "p50": nearest_rank(latencies, 0.5),
                "p90": nearest_rank(latencies, 0.9),
                "p99": nearest_rank(latencies, 0.99),
                "p999": nearest_rank(latencies, 0.999),
                "max": latencies[-1],
                "mean": round(statistics.fmean(latencies), 3),
            }
        record["logged"] = len(latencies)
        record["logged_failures"] = failed
        if args.cdf:
            write_cdf(args.cdf, latencies)
        if not args.keep_logs:
            for name in files:
                os.remove(name)
    for pair in args.extra or []:
        key, _, value = pair.partition("=")
        record[key] = parse_value(value)
    append_result(args.results, record)
    lat = record.get("latency_ms", {})
    print(
        f"  pgbench {args.case} rep {args.rep}: {record['throughput']:.1f}/s"
        + (f", p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms" if lat else ""),
        file=sys.stderr,
    )


# --- record -----------------------------------------------------------------------------


def cmd_record(args):
    record = {"stage": args.stage, "case": args.case, "rep": args.rep}
    for item in args.json or []:
        prefix, _, path = item.rpartition("=")
        with open(path, encoding="utf-8") as src:
            text = src.read().strip()
        # A tool's JSON report is its last line (anything before it is not ours).
        data = json.loads(text.splitlines()[-1]) if text else {}
        if prefix:
            record[prefix] = data
        else:
            record.update(data)
    for pair in args.pairs or []:
        key, _, value = pair.partition("=")
        record[key] = parse_value(value)
    append_result(args.results, record)


# --- prom-delta -------------------------------------------------------------------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def read_metrics(path):
    samples = []
    with open(path, encoding="utf-8") as src:
        for line in src:
            if line.startswith("#"):
                continue
            match = SAMPLE.match(line.strip())
            if not match:
                continue
            name, labels, value = match.groups()
            labels = dict(LABEL.findall(labels or ""))
            try:
                samples.append((name, labels, float(value)))
            except ValueError:
                pass
    return samples


def histogram(samples, metric, want):
    buckets, total, count = {}, 0.0, 0.0
    for name, labels, value in samples:
        if any(labels.get(k) != v for k, v in want.items()):
            continue
        if name == metric + "_bucket":
            le = labels.get("le")
            bound = math.inf if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + value
        elif name == metric + "_sum":
            total += value
        elif name == metric + "_count":
            count += value
    return buckets, total, count


def bucket_quantile(q, bounds, counts):
    """histogram_quantile: linear interpolation inside the bucket holding rank q."""
    total = counts[-1] if counts else 0
    if total <= 0:
        return None, False
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts):
        if cumulative >= rank:
            if math.isinf(bound):
                # Beyond the last finite bucket: all we know is "more than" it.
                return lower, True
            inside = cumulative - below
            fraction = (rank - below) / inside if inside > 0 else 1.0
            return lower + (bound - lower) * fraction, False
        lower, below = bound, cumulative
    return lower, True


def cmd_prom_delta(args):
    want = dict(pair.split("=", 1) for pair in args.label or [])
    b_buckets, b_sum, b_count = histogram(read_metrics(args.before), args.metric, want)
    a_buckets, a_sum, a_count = histogram(read_metrics(args.after), args.metric, want)
    if not a_buckets:
        # A misspelt name or label would otherwise show as "–" in the report.
        labels = ",".join(f'{k}="{v}"' for k, v in want.items())
        fail(f"no histogram {args.metric}{{{labels}}} in {args.after}")
    bounds = sorted(a_buckets)
    counts = [a_buckets[b] - b_buckets.get(b, 0.0) for b in bounds]
    count = a_count - b_count
    # Seconds are reported in milliseconds; --raw keeps the unit (e.g. rows).
    scale, suffix = (1.0, "") if args.raw else (1000.0, "_ms")
    result = {"count": int(round(count))}
    if count > 0:
        result["mean" + suffix] = round((a_sum - b_sum) / count * scale, 3)
        for q, key in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
            value, beyond = bucket_quantile(q, bounds, counts)
            result[key + suffix] = round(value * scale, 3)
            if beyond:
                result[key + "_beyond_last_bucket"] = True
    print(json.dumps(result))


# --- cpu-delta --------------------------------------------------------------------------

CPU_PARTS = ("api", "postgres", "relay", "nats", "worker", "sim", "harness")


def read_cpu(path):
    """A cpu_snapshot file of bench.sh: seconds of CPU per part, and the wall clock."""
    values, clk = {}, 100.0
    with open(path, encoding="utf-8") as src:
        for line in src:
            name, _, rest = line.strip().partition(" ")
            if name == "clk_tck":
                clk = float(rest)
            elif name == "harness":
                # `times`: children's user and system time, e.g. "0m1.250s 0m0.340s".
                total = 0.0
                for part in rest.split():
                    match = re.match(r"(\d+)m([\d.]+)s", part)
                    if match:
                        total += int(match.group(1)) * 60 + float(match.group(2))
                values[name] = ("seconds", total)
            else:
                values[name] = ("raw", float(rest))
    out = {}
    for name, (kind, value) in values.items():
        out[name] = value if kind == "seconds" or name == "wall" else value / clk
    return out


def cmd_cpu_delta(args):
    before, load_end, after = read_cpu(args.before), read_cpu(args.load_end), read_cpu(args.after)
    with open(args.events, encoding="utf-8") as src:
        report = json.loads(src.read().strip().splitlines()[-1])
    # Events: actions recorded (201 check-in/out, 200 unlock); refusals record nothing.
    events = sum(n for status, n in report.get("statuses", {}).items() if status in ("200", "201"))
    result = {"events": events, "load_s": round(load_end["wall"] - before["wall"], 3),
              "total_s": round(after["wall"] - before["wall"], 3), "per_event_ms": {}}
    total_cpu, load_cpu = 0.0, 0.0
    for part in CPU_PARTS:
        used = max(0.0, after.get(part, 0.0) - before.get(part, 0.0))
        total_cpu += used
        load_cpu += max(0.0, load_end.get(part, 0.0) - before.get(part, 0.0))
        if events:
            result["per_event_ms"][part] = round(used / events * 1000.0, 3)
    if events:
        result["per_event_ms"]["total"] = round(total_cpu / events * 1000.0, 3)
    # How many of the machine's cores the stack kept busy while the load was on.
    if result["load_s"] > 0:
        result["cores_busy"] = round(load_cpu / result["load_s"], 2)
    print(json.dumps(result))


def cmd_cpu_use(args):
    """CPU seconds of each part between two cpu_snapshot files; per second of wall time
    (cores), and per unit of work (`--count`, e.g. deliveries) in microseconds."""
    before, after = read_cpu(args.before), read_cpu(args.after)
    wall = after["wall"] - before["wall"]
    result = {"wall_s": round(wall, 3), "seconds": {}, "cores": {}}
    if args.count:
        result["count"] = args.count
        result["per_count_us"] = {}
    total = 0.0
    for part in CPU_PARTS:
        used = max(0.0, after.get(part, 0.0) - before.get(part, 0.0))
        total += used
        result["seconds"][part] = round(used, 3)
        if wall > 0:
            result["cores"][part] = round(used / wall, 4)
        if args.count:
            result["per_count_us"][part] = round(used / args.count * 1e6, 2)
    result["seconds"]["total"] = round(total, 3)
    if wall > 0:
        result["cores"]["total"] = round(total / wall, 4)
    if args.count:
        result["per_count_us"]["total"] = round(total / args.count * 1e6, 2)
    print(json.dumps(result))


# --- delivery-rate ----------------------------------------------------------------------


def cmd_delivery_rate(args):
    """Polls the simulator's /stats until both sinks have taken `--expect` effects in all;
    the rate is taken between 10% and 90% of them (leaving out the workers' start and the
    last stragglers)."""
    import time

    samples = []
    deadline = time.monotonic() + args.timeout
    while True:
        with urllib.request.urlopen(args.stats, timeout=5) as answer:
            stats = json.load(answer)
        effects = stats["legacy"]["effects"] + stats["webhooks"]["effects"]
        now = time.monotonic()
        samples.append((now, effects))
        if effects >= args.expect:
            break
        if now > deadline:
            print(f"only {effects} of {args.expect} effects within {args.timeout} s", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.1)

    def first_at(share):
        return next(s for s in samples if s[1] >= share * args.expect)

    (t10, e10), (t90, e90) = first_at(0.1), first_at(0.9)
    duplicates = stats["legacy"]["duplicates"] + stats["webhooks"]["duplicates"]
    print(json.dumps({
        "deliveries_per_s": round((e90 - e10) / (t90 - t10), 1) if t90 > t10 else None,
        "total_s": round(samples[-1][0] - samples[0][0], 3),
        "effects": effects,
        "duplicates": duplicates,
    }))


# --- prom-value -------------------------------------------------------------------------


def cmd_prom_value(args):
    want = dict(pair.split("=", 1) for pair in args.label or [])
    values = [
        value
        for name, labels, value in read_metrics(args.file)
        if name == args.metric and all(labels.get(k) == v for k, v in want.items())
    ]
    if not values:
        if args.default is None:
            labels = ",".join(f'{k}="{v}"' for k, v in want.items())
            fail(f"no sample {args.metric}{{{labels}}} in {args.file}")
        print(args.default)
        return
    total = sum(values)
    print(int(total) if total == int(total) else total)


# --- subscribers ------------------------------------------------------------------------


def sim_request(method, url, body=None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    with opener.open(request, timeout=10) as answer:
        text = answer.read()
    return json.loads(text) if text else None


SUBSCRIBER_COUNTERS = ("received", "applied", "duplicates", "rejected_signature", "abandoned", "order_violations")


def cmd_subscribers(args):
    admin = args.admin.rstrip("/")
    if args.action == "create":
        for n in range(1, args.count + 1):
            try:
                sim_request("PUT", f"{admin}/endpoints/{args.prefix}{n}", {"secrets": [args.secret]})
            except OSError as error:
                fail(f"cannot create the simulator's subscriber {args.prefix}{n}: {error}")
        return
    # sum: the counters of every subscriber whose name starts with the prefix, in one
    # request (GET /endpoints lists them with their counters, without their events).
    listed = sim_request("GET", f"{admin}/endpoints")
    totals = {key: 0 for key in SUBSCRIBER_COUNTERS}
    totals["subscribers"] = 0
    answered = {}
    for entry in listed.get("endpoints", []):
        if not entry.get("name", "").startswith(args.prefix):
            continue
        totals["subscribers"] += 1
        stats = entry.get("stats", {})
        for key in SUBSCRIBER_COUNTERS:
            totals[key] += stats.get(key, 0)
        for status, n in stats.get("answered", {}).items():
            answered[status] = answered.get(status, 0) + n
    totals["answered"] = answered
    if args.field:
        print(totals[args.field])
    else:
        print(json.dumps(totals))


# --- pending ----------------------------------------------------------------------------


def cmd_pending(args):
    text = sys.stdin.read().strip()
    try:
        status = json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        fail(f"unreadable `latch outbox status --json` output: {text[:200]!r}")
    if args.what == "outbox":
        print(status["outbox"]["pending_rows"])
        return
    if args.what == "stream":
        print(status["stream"]["messages"])
        return
    for consumer in status.get("consumers", []):
        if consumer["sink"] == args.what:
            print(consumer["pending"] + consumer["in_flight"])
            return
    fail(f"no consumer for sink {args.what} in {status}")


# --- stream-last ------------------------------------------------------------------------


def cmd_stream_last(args):
    url = args.monitor.rstrip("/") + "/jsz?streams=true"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as answer:
        jsz = json.load(answer)
    for account in jsz.get("account_details", []):
        for stream in account.get("stream_detail", []):
            if stream.get("name") == args.stream:
                stamp = stream["state"]["last_ts"]
                # RFC 3339 with nanoseconds: datetime takes microseconds.
                match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", stamp)
                if not match:
                    fail(f"unreadable last_ts {stamp!r}")
                base = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
                fraction = float("0." + (match.group(2) or "0"))
                print(f"{base.timestamp() + fraction:.6f}")
                return
    fail(f"no stream {args.stream} at {url}")


# --- summary ----------------------------------------------------------------------------


def cmd_summary(args):
    with open(args.file, encoding="utf-8") as src:
        report = json.loads(src.read().strip().splitlines()[-1])
    if "msgs_per_s" in report:
        lat = report["ack_latency_ms"]
        print(
            f"{report['msgs_per_s']:,.0f} msg/s, ack p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms"
        )
    else:
        lat = report["latency_ms"]
        print(
            f"{report['throughput_rps']:,.1f}/s, p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms, "
            f"errors {report['errors']}, statuses {report['statuses']}"
        )


# --- value ------------------------------------------------------------------------------


def medians_by_case(records, stage, metric):
    by_case = {}
    for record in records:
        if record.get("stage") != stage:
            continue
        value = get_path(record, metric)
        if isinstance(value, (int, float)):
            by_case.setdefault(record.get("case"), []).append(value)
    return {case: statistics.median(values) for case, values in by_case.items()}


def cmd_value(args):
    medians = medians_by_case(read_results(args.results), args.stage, args.metric)
    if args.case is not None:
        if args.case not in medians:
            fail(f"no {args.metric} for {args.stage}/{args.case} in {args.results}")
        print(f"{medians[args.case]:.6g}")
    else:
        if not medians:
            fail(f"no {args.metric} for stage {args.stage} in {args.results}")
        print(f"{max(medians.values()):.6g}")


# --- machine ----------------------------------------------------------------------------


def run_text(command):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def cmd_machine(args):
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as src:
        for line in src:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with open("/proc/meminfo", encoding="utf-8") as src:
        for line in src:
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    commit = run_text(["git", "-C", args.root, "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", args.root, "status", "--porcelain"], capture_output=True, text=True
    ).stdout.strip()
    facts = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": args.mode,
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_gib, 1),
        "kernel": os.uname().release,
        "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "postgres": run_text([os.path.join(args.pg_bin, "postgres"), "--version"]),
        "pgbench": run_text([os.path.join(args.pg_bin, "pgbench"), "--version"]),
        "nats_server": run_text([args.nats_server, "--version"]),
        "rustc": run_text(["rustc", "--version"]),
        "git_commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }
    for pair in args.pairs or []:
        key, _, value = pair.partition("=")
        facts[key] = parse_value(value)
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(facts, out, indent=2)


# --- report -----------------------------------------------------------------------------


def fmt_num(value, digits=0):
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


class Table:
    def __init__(self, records):
        self.records = records

    def values(self, stage, case, metric):
        out = []
        for record in self.records:
            if record.get("stage") == stage and record.get("case") == case:
                value = get_path(record, metric)
                if isinstance(value, (int, float)):
                    out.append(value)
        return out

    def median(self, stage, case, metric):
        values = self.values(stage, case, metric)
        return statistics.median(values) if values else None

    def cell(self, stage, case, metric, digits=0):
        """median [min–max] over the repetitions (just the value when there is one)."""
        values = self.values(stage, case, metric)
        if not values:
            return "–"
        med = statistics.median(values)
        if len(values) == 1:
            return fmt_num(med, digits)
        return f"{fmt_num(med, digits)} [{fmt_num(min(values), digits)}–{fmt_num(max(values), digits)}]"

    def cases(self, stage):
        seen = []
        for record in self.records:
            if record.get("stage") == stage and record.get("case") not in seen:
                seen.append(record.get("case"))
        return seen


def verdict(ok):
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**missed**"


def latency_cells(t, stage, case, metric="latency_ms", digits=3):
    """`p50 | p90 | p99 | max` of one latency record, as table cells."""
    return " | ".join(t.cell(stage, case, f"{metric}.{q}", digits) for q in ("p50", "p90", "p99", "max"))


def ratio_text(value):
    return "–" if value is None else f"{value:.2f}"


def write_path_table(t, add, kind, noun):
    """The pgbench-vs-API table of one reader statement (`kind`: unlock, checkin); answers
    the API/pgbench throughput ratio at each concurrency."""
    pg_stage, api_stage = f"pg_{kind}", f"api_{kind}"
    add(
        f"| C | pgbench tx/s | pgbench p50 | pgbench p99 | latch {noun}/s | latch p50 | latch p99 "
        "| latch p99.9 | latch / pgbench |"
    )
    add("|---|---|---|---|---|---|---|---|---|")
    ratios = {}
    for case in t.cases(pg_stage):
        pg = t.median(pg_stage, case, "throughput")
        api = t.median(api_stage, case, "throughput_rps")
        ratio = api / pg if pg and api is not None else None
        ratios[case] = ratio
        add(
            f"| {case.lstrip('c')} | {t.cell(pg_stage, case, 'throughput')} "
            f"| {t.cell(pg_stage, case, 'latency_ms.p50', 3)} "
            f"| {t.cell(pg_stage, case, 'latency_ms.p99', 3)} "
            f"| {t.cell(api_stage, case, 'throughput_rps')} "
            f"| {t.cell(api_stage, case, 'latency_ms.p50', 3)} "
            f"| {t.cell(api_stage, case, 'latency_ms.p99', 3)} "
            f"| {t.cell(api_stage, case, 'latency_ms.p999', 3)} | {ratio_text(ratio)} |"
        )

    def best(stage, metric):
        cases = [c for c in t.cases(stage) if t.median(stage, c, metric) is not None]
        return max(cases, key=lambda c: t.median(stage, c, metric), default=None)

    pg_best_case, api_best_case = best(pg_stage, "throughput"), best(api_stage, "throughput_rps")
    if pg_best_case and api_best_case:
        pg_best = t.median(pg_stage, pg_best_case, "throughput")
        api_best = t.median(api_stage, api_best_case, "throughput_rps")
        add(
            f"| best | {fmt_num(pg_best)} (C={pg_best_case.lstrip('c')}) | | | {fmt_num(api_best)} "
            f"(C={api_best_case.lstrip('c')}) | | | | {ratio_text(api_best / pg_best)} |"
        )
    add("")
    return ratios


def p99_target(t, case, name, stage, baseline, most):
    """A target row: `stage`'s p99 at most `most` times `baseline`'s, in the same case."""
    base99 = t.median(baseline, case, "latency_ms.p99")
    got99 = t.median(stage, case, "latency_ms.p99")
    ratio = got99 / base99 if base99 and got99 is not None else None
    return (
        name,
        f"{fmt_num(got99, 3)} ms vs {fmt_num(base99, 3)} ms: {ratio_text(ratio)}×",
        verdict(None if ratio is None else ratio <= most),
    )


def scale_section(t, add, machine):
    """Section 8: a backlog delivered by 1, 2 and 4 partitioned workers (stage `scale`), and
    the relay's drain into a 3-node cluster with 3 replicas against one server (stage
    `replication`)."""
    if t.cases("scale"):
        add("## 8a. Partitioned workers: a backlog delivered by 1, 2 and 4 workers")
        add("")
        add(
            "`latch-load backlog` puts check-ins and check-outs of many holders into a fresh "
            "stream of 8 partitions; both sinks of `latch-sim legacy` answer after 5 ms; W "
            "workers with `LATCH_WORKER_PARTITIONED=true` share the partitions (16 lanes per "
            "partition and sink, rate limits lifted). Deliveries/s between 10% and 90% of the "
            "deliveries (both sinks), median [min–max]; CPU per delivery of the workers and of "
            f"the whole stack; {machine.get('cores', '?')} cores shared by everything."
        )
        add("")
        add("| workers | deliveries/s | vs 1 worker | worker µs/delivery | stack µs/delivery | stack cores busy | duplicates |")
        add("|---|---|---|---|---|---|---|")
        one = t.median("scale", "w1", "rate.deliveries_per_s")
        for case in t.cases("scale"):
            got = t.median("scale", case, "rate.deliveries_per_s")
            ratio = got / one if got is not None and one else None
            add(
                f"| {case.lstrip('w')} | {t.cell('scale', case, 'rate.deliveries_per_s')} | {ratio_text(ratio)} "
                f"| {t.cell('scale', case, 'cpu.per_count_us.worker', 1)} "
                f"| {t.cell('scale', case, 'cpu.per_count_us.total', 1)} "
                f"| {t.cell('scale', case, 'cpu.cores.total', 2)} "
                f"| {t.cell('scale', case, 'rate.duplicates')} |"
            )
        add("")
    if t.cases("replication"):
        add("## 8b. The price of replication: the relay into a 3-node cluster (R3)")
        add("")
        add(
            "The relay draining a pre-filled outbox into one nats-server, then into three "
            "routed over loopback with `LATCH_NATS_REPLICAS=3` (every message stored on three "
            "servers, each `sync_interval: always`, all on the same machine and disk)."
        )
        add("")
        add("| NATS | rows/s | vs one server |")
        add("|---|---|---|")
        single = t.median("replication", "single", "rows_per_s")
        for case in t.cases("replication"):
            got = t.median("replication", case, "rows_per_s")
            ratio = got / single if got is not None and single else None
            label = {"single": "one server", "r3": "3 nodes, R3"}.get(case, case)
            add(f"| {label} | {t.cell('replication', case, 'rows_per_s')} | {ratio_text(ratio)} |")
        add("")


def webhook_section(t, add, targets, machine):
    """Section 7: the worker delivering to many webhook endpoints (stages `webhooks`, one
    record per load case and repetition, and `webhooks_idle`, one per idle size)."""
    load_cases = t.cases("webhooks")
    idle_cases = t.cases("webhooks_idle")
    if not load_cases and not idle_cases:
        return
    settings = None
    for record in t.records:
        if record.get("stage") in ("webhooks", "webhooks_idle") and record.get("settings"):
            settings = record["settings"]
    cores = machine.get("cores") or 1
    add("## 7. Webhook endpoints: one worker delivering to many")
    add("")
    add(
        "A worker with a database and no sinks delivers to endpoints written straight into "
        "`webhook_endpoints` (`bench/webhook_endpoints.sql`); each healthy one is a named "
        "subscriber of `latch-sim legacy` (`/webhooks/endpoints/ok-N`, which verifies the "
        "signature and applies each event once), every event is routed to every endpoint, and "
        "readers check in through the API (`latch-load readers --endpoint check-in`, open "
        "loop). Each case starts a fresh worker on fresh endpoints, warms up, waits for the "
        "healthy endpoints to have every event, then measures for the run's duration and "
        "lets the backlog drain (bounded). Deliveries/s come from the worker's "
        "`latch_worker_deliveries_total{sink=\"endpoints\",outcome=\"ok\"}` and from the "
        "simulator's applied counts; commit→delivered from the worker's histogram "
        "(`latch_worker_commit_to_delivered_seconds{sink=\"endpoints\"}`, before → drained; "
        "it is observed only for delivered calls, so with endpoints down it holds the healthy "
        "ones alone) and, as a cross-check, from the worker's attempt records "
        "(`bench/webhook_latency.sql`: a delivered attempt's `attempted_at + latency_ms` minus "
        "its action's `recorded_at`, for the events recorded in the measured window)."
    )
    add("")
    if settings:
        add(f"Worker settings: {settings}.")
        add("")
    labels = {
        "healthy": "all healthy",
        "down": "some down (closed port)",
        "healthy_low": "all healthy, lower rate",
        "down_low": "some down, lower rate",
    }

    def ceiling(case):
        total = t.median("webhooks", case, "cpu.per_count_us.total")
        return cores * 1e6 / total if total else None

    if load_cases:
        add(
            "| case | endpoints (healthy + down) | offered deliveries/s | delivered/s during the load "
            "(worker) | applied/s (simulator) | achieved / offered | CPU ceiling/s | achieved / "
            "ceiling | backlog at load end | drained after s | delivered/s, load start → drained |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|")
        for case in load_cases:
            offered = t.median("webhooks", case, "offered_deliveries_per_s")
            got = t.median("webhooks", case, "deliveries_per_s_load")
            ceil = ceiling(case)
            healthy = t.median("webhooks", case, "healthy")
            down = t.median("webhooks", case, "down")
            caught = t.values("webhooks", case, "caught_up")
            drained = t.cell("webhooks", case, "drain_s", 1)
            if caught and min(caught) == 0:
                drained += " (not drained in some run: bounded)"
            add(
                f"| {labels.get(case, case)} | {fmt_num(healthy)} + {fmt_num(down)} | {fmt_num(offered)} "
                f"| {t.cell('webhooks', case, 'deliveries_per_s_load')} "
                f"| {t.cell('webhooks', case, 'applied_per_s_load')} "
                f"| {ratio_text(got / offered if got is not None and offered else None)} "
                f"| {fmt_num(ceil)} | {ratio_text(got / ceil if got is not None and ceil else None)} "
                f"| {t.cell('webhooks', case, 'backlog_at_load_end')} | {drained} "
                f"| {t.cell('webhooks', case, 'deliveries_per_s_to_drained')} |"
            )
        add("")
        add(
            "Offered deliveries are the check-in rate times the healthy endpoints. The limit on "
            "this machine is its CPU: every delivery costs the worker (a signed HTTP call), the "
            "simulator (verifying and applying it) and nats-server, all on the same "
            f"{cores} cores; the CPU ceiling divides the cores by the whole stack's CPU time "
            "per delivery (measured in the same run, table below). A backlog at the load's end "
            "means the offered rate was above what the worker delivers; it is the stream "
            "itself (each endpoint's cursor), drained after the load stops."
        )
        add("")
        add(
            "| case | commit→delivered p50 | p90 | p99 | from attempt records p50 | p99 "
            "| attempts recorded / deliveries | one call p50 | one call p99 |"
        )
        add("|---|---|---|---|---|---|---|---|---|")
        for case in load_cases:
            add(
                f"| {labels.get(case, case)} | {t.cell('webhooks', case, 'latency.p50_ms', 1)} "
                f"| {t.cell('webhooks', case, 'latency.p90_ms', 1)} | {t.cell('webhooks', case, 'latency.p99_ms', 1)} "
                f"| {t.cell('webhooks', case, 'attempts.p50_ms', 1)} | {t.cell('webhooks', case, 'attempts.p99_ms', 1)} "
                f"| {t.cell('webhooks', case, 'attempts.coverage', 2)} "
                f"| {t.cell('webhooks', case, 'call.p50_ms', 2)} | {t.cell('webhooks', case, 'call.p99_ms', 2)} |"
            )
        add("")
        # A backlog of more than a second's offered deliveries at the load's end: the worker
        # was offered more than it delivers, and the p99 is mostly time spent in the backlog.
        def saturated(case):
            return (t.median("webhooks", case, "backlog_at_load_end") or 0) > (
                t.median("webhooks", case, "offered_deliveries_per_s") or 0
            )

        for base, faulty in (("healthy", "down"), ("healthy_low", "down_low")):
            base99 = t.median("webhooks", base, "latency.p99_ms")
            down99 = t.median("webhooks", faulty, "latency.p99_ms")
            if base99 is None or down99 is None:
                continue
            ratio = down99 / base99 if base99 else None
            down_n = t.median("webhooks", faulty, "down")
            total_n = t.median("webhooks", faulty, "endpoints")
            rate = t.median("webhooks", faulty, "rate")
            both = [c for c in (base, faulty) if saturated(c)]
            if len(both) == 2:
                note = (
                    " Both runs were offered more than the worker delivers (a backlog at the "
                    "load's end), so both p99s are mostly the time events waited in the backlog, "
                    "and the ratio compares two saturated workers rather than one endpoint's "
                    "neighbours."
                )
            elif both:
                note = f" Only {labels.get(both[0], both[0])} built a backlog: its p99 includes the time events waited in it."
            else:
                note = " Neither run built a backlog: this is the isolation the target is about."
            add(
                f"At {fmt_num(rate)} check-ins/s, with {fmt_num(down_n)} of {fmt_num(total_n)} endpoints "
                f"down, the healthy ones' commit→delivered p99 is {fmt_num(down99, 1)} ms against "
                f"{fmt_num(base99, 1)} ms with all healthy: {ratio_text(ratio)}× (target ≤ 1.2×)." + note
            )
            add("")
            targets.append(
                (
                    f"healthy endpoints' p99 with {fmt_num(down_n)} of {fmt_num(total_n)} down ≤ 1.2× "
                    f"the all-healthy p99 ({fmt_num(rate)} check-ins/s"
                    + (", saturated" if both else "") + ")",
                    f"{fmt_num(down99, 1)} ms vs {fmt_num(base99, 1)} ms: {ratio_text(ratio)}×",
                    verdict(None if ratio is None else ratio <= 1.2),
                )
            )
        add(
            "CPU time per delivery (µs; every delivered call from the measured load's start "
            "until the backlog drained), cores busy while the load was on, and the worker's "
            "memory:"
        )
        add("")
        add(
            "| case | worker | simulator | nats-server | postgres | api + relay + load gen. and harness | total "
            "| worker cores busy | all cores busy | worker RSS MB at load end | after the drain | peak |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for case in load_cases:
            others = []
            for record in t.records:
                if record.get("stage") == "webhooks" and record.get("case") == case:
                    per = get_path(record, "cpu.per_count_us") or {}
                    others.append(sum(per.get(p, 0.0) for p in ("api", "relay", "harness")))
            rest = fmt_num(statistics.median(others), 1) if others else "–"
            add(
                f"| {labels.get(case, case)} | {t.cell('webhooks', case, 'cpu.per_count_us.worker', 1)} "
                f"| {t.cell('webhooks', case, 'cpu.per_count_us.sim', 1)} "
                f"| {t.cell('webhooks', case, 'cpu.per_count_us.nats', 1)} "
                f"| {t.cell('webhooks', case, 'cpu.per_count_us.postgres', 1)} | {rest} "
                f"| {t.cell('webhooks', case, 'cpu.per_count_us.total', 1)} "
                f"| {t.cell('webhooks', case, 'cpu_load.cores.worker', 2)} "
                f"| {t.cell('webhooks', case, 'cpu_load.cores.total', 2)} "
                f"| {t.cell('webhooks', case, 'rss_mb_load_end', 1)} | {t.cell('webhooks', case, 'rss_mb_end', 1)} "
                f"| {t.cell('webhooks', case, 'vmhwm_mb', 1)} |"
            )
        add("")
        notes = []
        for case in load_cases:
            notes.append(
                f"{labels.get(case, case)}: {t.cell('webhooks', case, 'retries')} retries, "
                f"{t.cell('webhooks', case, 'dead_lettered')} dead-lettered, "
                f"{t.cell('webhooks', case, 'subscribers.duplicates')} duplicates and "
                f"{t.cell('webhooks', case, 'subscribers.order_violations')} order violations at the "
                f"subscribers, {t.cell('webhooks', case, 'log.warn')} warnings and "
                f"{t.cell('webhooks', case, 'log.error')} errors in the worker's log, "
                f"{t.cell('webhooks', case, 'tcp_opens_per_s_load')} TCP connections opened per second "
                f"during the load, machine-wide ({t.cell('webhooks', case, 'tcp_opens_per_delivery_load', 3)} "
                f"per delivery), {t.cell('webhooks', case, 'time_wait_sockets')} connections to the "
                "simulator in TIME_WAIT at the load's end"
            )
        add("Meanwhile — " + "; ".join(notes) + ".")
        add("")
    if idle_cases:
        add(
            "Idle endpoints: endpoints whose filter (`{reader_tamper_restored}`) no event "
            "matches, no load. Startup runs from the worker's launch until its gauge "
            "`latch_webhook_endpoints` shows every endpoint `delivering` and none "
            "`catching_up` (each endpoint first reads what it missed from the stream, from its start time to the stream's end; "
            "the gauge is set once per refresh, so ±1 s); then, after a settling pause, RSS "
            "and CPU over the run's duration (CPU in cores: seconds per second)."
        )
        add("")
        add(
            "| endpoints | start → at rest s | worker RSS MB | worker peak RSS MB | worker CPU at rest (cores) "
            "| postgres CPU (cores) | nats-server CPU (cores) |"
        )
        add("|---|---|---|---|---|---|---|")
        for case in idle_cases:
            add(
                f"| {fmt_num(t.median('webhooks_idle', case, 'endpoints'))} "
                f"| {t.cell('webhooks_idle', case, 'startup_s', 1)} | {t.cell('webhooks_idle', case, 'rss_mb', 1)} "
                f"| {t.cell('webhooks_idle', case, 'vmhwm_mb', 1)} "
                f"| {t.cell('webhooks_idle', case, 'cpu.cores.worker', 4)} "
                f"| {t.cell('webhooks_idle', case, 'cpu.cores.postgres', 4)} "
                f"| {t.cell('webhooks_idle', case, 'cpu.cores.nats', 4)} |"
            )
        add("")
        sizes = sorted(
            (t.median("webhooks_idle", c, "endpoints"), c) for c in idle_cases
            if t.median("webhooks_idle", c, "endpoints") is not None
        )
        if len(sizes) >= 2 and sizes[-1][0]:
            (n0, c0), (n1, c1) = sizes[0], sizes[-1]
            rss0, rss1 = t.median("webhooks_idle", c0, "rss_mb"), t.median("webhooks_idle", c1, "rss_mb")
            cpu0 = t.median("webhooks_idle", c0, "cpu.cores.worker")
            cpu1 = t.median("webhooks_idle", c1, "cpu.cores.worker")
            if None not in (rss0, rss1, cpu0, cpu1):
                add(
                    f"{fmt_num(n1)} idle endpoints against {fmt_num(n0)}: "
                    f"{rss1 - rss0:+.1f} MB RSS "
                    f"({fmt_num((rss1 - rss0) * 1024 / (n1 - n0), 2)} KB per endpoint), "
                    f"{(cpu1 - cpu0) * 100:+.2f}% of a core at rest (worker)."
                )
                add("")


def cmd_report(args):
    records = read_results(os.path.join(args.dir, "results.jsonl"))
    with open(os.path.join(args.dir, "machine.json"), encoding="utf-8") as src:
        machine = json.load(src)
    t = Table(records)
    lines = []
    add = lines.append
    reps = machine.get("reps", "?")
    add(f"# latch benchmark — {machine.get('date_utc')} ({machine.get('mode')} mode)")
    add("")
    add(
        f"Every cell is the median over {reps} repetition(s) [min–max], each after a warm-up; "
        "baselines were measured in the same run on the same private stack. Latencies are "
        "milliseconds. Nothing here is asserted."
    )
    add("")
    add("| machine | |")
    add("|---|---|")
    for key in (
        "cores", "cpu", "memory_gib", "kernel", "disk_sync", "postgres", "pgbench", "nats_server", "rustc",
        "git_commit", "load_average_at_start", "load_average_at_end", "busy_at_start",
        "builds_seen_during", "command", "settings",
    ):
        if key in machine:
            add(f"| {key.replace('_', ' ')} | {machine[key]} |")
    add("")

    targets = []

    # 1 + 2: the write path.
    add("## 1–2. The write path: PostgreSQL's limit (pgbench) vs the latch API")
    add("")
    add(
        "pgbench runs latch's own statement (captured from the API, see "
        "`raw/unlock.pgbench.sql` and `raw/check-in.pgbench.sql`) against the same seeded "
        "schema, one statement per transaction, synchronous commit; the API is driven by "
        "`latch-load readers` in a closed loop (C readers, each waiting for its answer). Both "
        "start from empty `actions`/`outbox` tables after a CHECKPOINT; no relay runs (so no "
        "writer notifies: the outbox trigger sends a NOTIFY only while a relay waits for one)."
    )
    add("")
    throughput_ratios = write_path_table(t, add, "unlock", "unlocks")
    add(
        "The seeded site answers about two thirds of unlocks `granted`; the rest are denials "
        "of every kind (recorded and published all the same)."
    )
    add("")
    if t.cases("api_checkin"):
        add("Check-ins (`POST /v1/check-ins`; each records the action, its outbox row and the "
            "holder's presence):")
        add("")
        write_path_table(t, add, "checkin", "check-ins")
        add(
            "409s are the deactivated holders (1 in 50), answered by design; the pgbench "
            "statement records nothing for them either."
        )
        add("")
    for case in t.cases("pg_notify_each"):
        add(
            f"Diagnostic (not latch's transaction): the unlock pgbench run at C = {case.lstrip('c')} with "
            "the outbox trigger as it was before the wake-up handshake "
            "(`migrations/V2__outbox_order.sql`: a `pg_notify` in every transaction, and "
            "PostgreSQL serialises the commits of notifying transactions): "
            f"{t.cell('pg_notify_each', case, 'throughput')} tx/s, p50 {t.cell('pg_notify_each', case, 'latency_ms.p50', 3)}, "
            f"p99 {t.cell('pg_notify_each', case, 'latency_ms.p99', 3)} — against "
            f"{t.cell('pg_unlock', case, 'throughput')} tx/s with latch's trigger."
        )
        add("")
    if throughput_ratios:
        met = all(r is not None and r >= 0.8 for r in throughput_ratios.values())
        detail = ", ".join(
            f"C={c.lstrip('c')}: {ratio_text(r)}" for c, r in throughput_ratios.items()
        )
        targets.append(("API unlock throughput ≥ 80% of pgbench at the same concurrency", detail, verdict(met)))

    open_cases = t.cases("pg_open")
    if open_cases:
        case = open_cases[0]
        add(f"### Open loop at {case.replace('r', '')} unlocks/s (half the API's best closed-loop rate)")
        add("")
        add(
            "Requests start on a fixed timetable whatever the answers; latency counts from when "
            f"each was due (pgbench `-R` with {fmt_num(t.median('pg_open', case, 'clients'))} clients"
            + (", the size of the API's connection pool" if t.median("pg_open", case, "clients") == 16 else "")
            + "; `latch-load readers --rate`)."
        )
        add("")
        add("| | achieved/s | p50 | p90 | p99 | p99.9 | max |")
        add("|---|---|---|---|---|---|---|")
        add(
            f"| pgbench | {t.cell('pg_open', case, 'throughput')} | {t.cell('pg_open', case, 'latency_ms.p50', 3)} "
            f"| {t.cell('pg_open', case, 'latency_ms.p90', 3)} | {t.cell('pg_open', case, 'latency_ms.p99', 3)} "
            f"| {t.cell('pg_open', case, 'latency_ms.p999', 3)} | {t.cell('pg_open', case, 'latency_ms.max', 3)} |"
        )
        add(
            f"| latch API | {t.cell('api_open', case, 'throughput_rps')} | {t.cell('api_open', case, 'latency_ms.p50', 3)} "
            f"| {t.cell('api_open', case, 'latency_ms.p90', 3)} | {t.cell('api_open', case, 'latency_ms.p99', 3)} "
            f"| {t.cell('api_open', case, 'latency_ms.p999', 3)} | {t.cell('api_open', case, 'latency_ms.max', 3)} |"
        )
        add("")
        targets.append(
            p99_target(t, case, "unlock p99 ≤ 2× pgbench's p99 at half the max rate", "api_open", "pg_open", 2.0)
        )

    # 2b: a flooding reader beside a steady one.
    for case in t.cases("limits_quiet"):
        rate = case.replace("r", "")
        limit = t.median("limits_quiet", case, "limit_per_minute")
        add(f"### One reader floods, another unlocks at {rate}/s (per-reader limit {fmt_num(limit)}/min)")
        add("")
        add(
            "A second API with per-reader rate limits on. Reader 2 unlocks on a fixed timetable, "
            "alone and then while reader 1 sends unlocks as fast as 16 connections allow "
            "(`latch-load readers --concurrency 16`), most of them answered 429."
        )
        add("")
        add("| reader 2 | achieved/s | p50 | p90 | p99 | max |")
        add("|---|---|---|---|---|---|")
        for stage, label in (("limits_quiet", "alone"), ("limits_flood", "while reader 1 floods")):
            add(f"| {label} | {t.cell(stage, case, 'throughput_rps')} | {latency_cells(t, stage, case)} |")
        add("")
        sent = t.median("limits_flood", case, "flooder.requests")
        refused = t.median("limits_flood", case, "flooder.statuses.429")
        add(
            f"Reader 1 sent {fmt_num(sent)} requests, {fmt_num(refused)} answered 429 "
            f"({fmt_num(t.median('limits_flood', case, 'flooder.throughput_rps'))}/s)."
        )
        add("")
        targets.append(
            p99_target(
                t,
                case,
                "a reader's unlock p99 while another reader floods ≤ 1.2× its p99 alone",
                "limits_flood",
                "limits_quiet",
                1.2,
            )
        )

    # 3: JetStream.
    js_cases = t.cases("js")
    if js_cases:
        add("## 3. JetStream's limit: raw publishing (`latch-load jetstream`)")
        add("")
        size = None
        for r in records:
            if r.get("stage") == "js" and "size" in r:
                size = r["size"]
        add(
            f"Same nats-server (`sync_interval: always`), its own stream, {size}-byte payloads "
            "(the mean size of latch's envelopes in this run) with latch's headers; every "
            "message has its own `Nats-Msg-Id`."
        )
        add("")
        add("| mode | in flight | msg/s | ack p50 | ack p99 |")
        add("|---|---|---|---|---|")
        names = {
            "single-1000": ("single publishes", "1,000"),
            "single-1": ("single publishes, each awaited", "1"),
            "single-10": ("single publishes", "10"),
            "atomic-1x1": ("atomic batches of 1", "1 batch"),
        }
        for case in js_cases:
            label, flight = names.get(case, (None, None))
            if label is None:
                match = re.match(r"atomic-(\d+)x(\d+)", case)
                label = f"atomic batches of {match.group(1)}" if match else case
                flight = f"{match.group(2)} batch(es)" if match else ""
            add(
                f"| {label} | {flight} | {t.cell('js', case, 'msgs_per_s')} | {t.cell('js', case, 'ack_latency_ms.p50', 3)} "
                f"| {t.cell('js', case, 'ack_latency_ms.p99', 3)} |"
            )
        add("")
        add(
            "An ack is one message's (single) or one whole batch's (atomic). Atomic batches are "
            "what the relay sends when it drains a backlog: 500 rows per batch, one batch at a "
            "time. A batch of a few rows goes as single publishes pipelined in segments of "
            "distinct holders, between `single-1` (one holder) and `single-10`."
        )
        add("")

    # 4: relay drain.
    if t.cases("relay_drain") or t.cases("pg_claim"):
        add("## 4. Relay: draining a pre-filled outbox")
        add("")
        rows = None
        for r in records:
            if r.get("stage") == "relay_drain":
                rows = r.get("rows")
        add(
            f"{fmt_num(rows)} rows inserted through `actions` (the trigger builds the real "
            "envelopes), then `latch relay` started; its time runs from its admin endpoint "
            "answering (connected, stream ready) to the server storing the last message "
            "(the outbox is then empty). PostgreSQL's side alone: pgbench doing the relay's "
            "claim (500 rows, `FOR UPDATE SKIP LOCKED`) + DELETE, one client. JetStream's "
            "side alone: stage 3's atomic batches of 500, one at a time, as the relay sends them."
        )
        add("")
        add("| | rows/s |")
        add("|---|---|")
        add(f"| latch relay (batch 500) | {t.cell('relay_drain', 'batch500', 'rows_per_s')} |")
        add(
            f"| latch relay, counted from its process start | "
            f"{t.cell('relay_drain', 'batch500', 'rows_per_s_from_process_start')} |"
        )
        add(f"| PostgreSQL claim + delete (pgbench, 1 client) | {t.cell('pg_claim', 'batch500', 'throughput')} |")
        add(f"| JetStream atomic batches of 500, 1 in flight | {t.cell('js', 'atomic-500x1', 'msgs_per_s')} |")
        add("")
        relay = t.median("relay_drain", "batch500", "rows_per_s")
        bounds = [
            v
            for v in (
                t.median("pg_claim", "batch500", "throughput"),
                t.median("js", "atomic-500x1", "msgs_per_s"),
            )
            if v
        ]
        if relay is not None and bounds:
            ratio = relay / min(bounds)
            targets.append(
                (
                    "relay ≥ 60% of min(raw JetStream atomic 500, PG claim+delete)",
                    f"{fmt_num(relay)} vs {fmt_num(min(bounds))} rows/s: {ratio_text(ratio)}",
                    verdict(ratio >= 0.6),
                )
            )

    # 5: pipeline.
    pipe_cases = t.cases("pipeline")
    if pipe_cases:
        add("## 5. The whole pipeline at fixed offered loads")
        add("")
        add(
            "Check-ins and check-outs (`latch-load readers --endpoint presence-mix`, open loop) "
            "through api → PostgreSQL → relay → JetStream → worker → `latch-sim legacy` "
            "(both sinks). Lags are quantiles of the relay's and worker's Prometheus histograms "
            "between snapshots taken before and after the measured part (interpolated inside "
            "buckets 1, 2.5, 5, 10, 25, 50 ms …, so read them as ±half a bucket)."
        )
        add("")
        add(
            "| offered/s | achieved/s | API p50 | API p99 | commit→stream p50 | p99 | commit→legacy p50 | p99 "
            "| commit→webhooks p50 | p99 |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|")
        for case in pipe_cases:
            add(
                f"| {case.lstrip('r')} | {t.cell('pipeline', case, 'api.throughput_rps')} "
                f"| {t.cell('pipeline', case, 'api.latency_ms.p50', 2)} "
                f"| {t.cell('pipeline', case, 'api.latency_ms.p99', 2)} "
                f"| {t.cell('pipeline', case, 'stream.p50_ms', 2)} | {t.cell('pipeline', case, 'stream.p99_ms', 2)} "
                f"| {t.cell('pipeline', case, 'legacy.p50_ms', 2)} | {t.cell('pipeline', case, 'legacy.p99_ms', 2)} "
                f"| {t.cell('pipeline', case, 'webhooks.p50_ms', 2)} | {t.cell('pipeline', case, 'webhooks.p99_ms', 2)} |"
            )
        add("")
        add(
            "What the relay did meanwhile (its own histograms): the time to publish one batch "
            "(sent → acknowledged: one atomic batch, or for a few rows single publishes "
            "pipelined in segments of distinct holders) and the rows per batch."
        )
        add("")
        add("| offered/s | relay batches | rows per batch (mean) | publish p50 | publish p99 |")
        add("|---|---|---|---|---|")
        for case in pipe_cases:
            add(
                f"| {case.lstrip('r')} | {t.cell('pipeline', case, 'publish.count')} "
                f"| {t.cell('pipeline', case, 'batch.mean', 1)} | {t.cell('pipeline', case, 'publish.p50_ms', 2)} "
                f"| {t.cell('pipeline', case, 'publish.p99_ms', 2)} |"
            )
        add("")
        if any(get_path(r, "cpu.per_event_ms.total") is not None for r in records if r.get("stage") == "pipeline"):
            add(
                "CPU time per recorded event (ms), from each process's /proc counters between the "
                "start of the load and the pipeline going idle; the load generator and the "
                "harness's polling are counted together. `cores busy`: CPU used while the load "
                "was on, in cores (the machine has "
                f"{machine.get('cores')})."
            )
            add("")
            add("| offered/s | api | postgres | relay | nats-server | worker | sinks (sim) | load gen. | total | cores busy |")
            add("|---|---|---|---|---|---|---|---|---|---|")
            for case in pipe_cases:
                cells = [t.cell("pipeline", case, f"cpu.per_event_ms.{p}", 3) for p in CPU_PARTS]
                add(
                    f"| {case.lstrip('r')} | " + " | ".join(cells)
                    + f" | {t.cell('pipeline', case, 'cpu.per_event_ms.total', 3)} | {t.cell('pipeline', case, 'cpu.cores_busy', 2)} |"
                )
            add("")
        target_case = None
        for case in pipe_cases:
            if case == "r1000":
                target_case = case
        if target_case:
            worst50 = max(
                v for v in (
                    t.median("pipeline", target_case, "legacy.p50_ms"),
                    t.median("pipeline", target_case, "webhooks.p50_ms"),
                ) if v is not None
            )
            worst99 = max(
                v for v in (
                    t.median("pipeline", target_case, "legacy.p99_ms"),
                    t.median("pipeline", target_case, "webhooks.p99_ms"),
                ) if v is not None
            )
            targets.append(
                (
                    "commit→delivered p50 < 5 ms at 1,000 events/s",
                    f"{fmt_num(worst50, 2)} ms (slower sink)",
                    verdict(worst50 < 5.0),
                )
            )
            targets.append(
                (
                    "commit→delivered p99 < 25 ms at 1,000 events/s",
                    f"{fmt_num(worst99, 2)} ms (slower sink)",
                    verdict(worst99 < 25.0),
                )
            )
    outage_cases = t.cases("outage")
    if outage_cases:
        case = outage_cases[0]
        add(f"### Backlog after a simulated legacy outage (load {case.lstrip('r')} events/s kept on)")
        add("")
        add(
            "`PUT /faults {\"down\": true}` on the simulator for the outage, then `{}`; the "
            "legacy consumer's backlog (`latch outbox status --json`: pending + in flight) is "
            "polled until it is back to the steady state."
        )
        add("")
        add("| outage s | backlog at peak | clear → delivering again s | clear → drained s | drain rate (deliveries/s) | net backlog reduction/s |")
        add("|---|---|---|---|---|---|")
        add(
            f"| {t.cell('outage', case, 'outage_s')} | {t.cell('outage', case, 'peak_backlog')} "
            f"| {t.cell('outage', case, 'resume_s', 1)} | {t.cell('outage', case, 'recovery_s', 1)} "
            f"| {t.cell('outage', case, 'drain_rate_gross')} | {t.cell('outage', case, 'drain_rate_net')} |"
        )
        add("")

    # 6: the event feed.
    for case in t.cases("feed_stream"):
        clients = t.median("feed_stream", case, "clients")
        rate = t.median("feed_stream", case, "rate")
        add(f"## 6. The event feed: {fmt_num(clients)} Server-Sent Events clients, readers checking in at {fmt_num(rate)}/s")
        add("")
        add(
            "`latch-load feed stream` holds the clients open on the one API process "
            "(`GET /v1/events/stream`) while `latch-load readers` checks in at the given rate; "
            "latency runs from each event's `recorded_at` (PostgreSQL's clock at the commit) to "
            "its arrival at a client, on this machine. Beside them one ordered JetStream consumer "
            "reads the stream directly, measured the same way: what the relay and JetStream "
            "take, which the API's fan-out adds to. The API's memory is read from /proc before "
            "and with the clients connected (idle), its CPU time over the measured part, and "
            "the events it sent from its own counter."
        )
        add("")
        add("| reader | events received/s | p50 ms | p90 ms | p99 ms | max ms |")
        add("|---|---|---|---|---|---|")
        add(
            f"| all SSE clients | {t.cell('feed_stream', case, 'events_per_s')} "
            f"| {latency_cells(t, 'feed_stream', case, digits=2)} |"
        )
        add(f"| one JetStream consumer | – | {latency_cells(t, 'feed_stream', case, 'direct_latency_ms', 2)} |")
        add("")
        sse99 = t.median("feed_stream", case, "latency_ms.p99")
        direct99 = t.median("feed_stream", case, "direct_latency_ms.p99")
        sse50 = t.median("feed_stream", case, "latency_ms.p50")
        direct50 = t.median("feed_stream", case, "direct_latency_ms.p50")
        ratio99 = sse99 / direct99 if sse99 is not None and direct99 else None
        ratio50 = sse50 / direct50 if sse50 is not None and direct50 else None
        add(
            f"SSE / direct consumer: p50 {ratio_text(ratio50)}×, p99 {ratio_text(ratio99)}×. "
            f"API memory: {t.cell('feed_stream', case, 'api_rss_mb_before', 1)} MB before, "
            f"{t.cell('feed_stream', case, 'api_rss_mb_connected', 1)} MB with the clients connected: "
            f"{t.cell('feed_stream', case, 'api_rss_kb_per_client', 1)} KB per client. "
            f"API CPU per event sent (one event to one client): {t.cell('feed_stream', case, 'api_cpu_us_per_event', 1)} µs "
            f"({t.cell('feed_stream', case, 'api_events_sent')} sent in the measured part). "
            f"Streams closed for lag: {t.cell('feed_stream', case, 'lagged')}."
        )
        add("")
        received = t.median("feed_stream", case, "events_received")
        direct = t.median("feed_stream", case, "direct_events")
        share = received / (direct * clients) if received is not None and direct and clients else None
        lagged = t.median("feed_stream", case, "lagged")
        ended = t.median("feed_stream", case, "streams_ended")
        # A stream that stays open misses nothing (each event follows on from the one before,
        # see api/src/feed); the count over the window is only a cross-check, since the
        # clients' window closes while the last events are still on their way.
        targets.append(
            (
                f"{fmt_num(clients)} SSE clients at {fmt_num(rate)} events/s: every client keeps up (no stream closed)",
                f"{fmt_num(lagged)} closed for lag, {fmt_num(ended)} ended; {ratio_text(share)} of events × clients "
                f"counted in the window; p99 {fmt_num(sse99, 1)} ms ({ratio_text(ratio99)}× a direct JetStream consumer's)",
                verdict(None if lagged is None or ended is None else lagged == 0 and ended == 0),
            )
        )
    for case in t.cases("feed_pull"):
        add("### Reading from a cursor: `GET /v1/events` pages of 1,000 vs an ordered consumer")
        add("")
        add(
            "`latch-load feed pull` pages from the oldest event until caught up; `latch-load feed "
            "raw` reads the same stream with one ordered consumer (and parses each event, as the "
            "API does): the limit of a page read."
        )
        add("")
        add("| reader | events | events/s | page p50 ms | page p99 ms |")
        add("|---|---|---|---|---|")
        add(
            f"| GET /v1/events | {t.cell('feed_pull', case, 'events')} | {t.cell('feed_pull', case, 'events_per_s')} "
            f"| {t.cell('feed_pull', case, 'page_ms.p50', 2)} | {t.cell('feed_pull', case, 'page_ms.p99', 2)} |"
        )
        add(
            f"| ordered consumer | {t.cell('feed_pull', case, 'raw.events')} | {t.cell('feed_pull', case, 'raw.events_per_s')} | – | – |"
        )
        add("")
        pulled = t.median("feed_pull", case, "events_per_s")
        limit = t.median("feed_pull", case, "raw.events_per_s")
        ratio = pulled / limit if pulled is not None and limit else None
        add(f"Pages / ordered consumer: {ratio_text(ratio)}.")
        add("")
        targets.append(
            (
                "paging GET /v1/events ≥ 50% of an ordered consumer's read rate",
                f"{fmt_num(pulled)} vs {fmt_num(limit)} events/s ({ratio_text(ratio)})",
                verdict(None if ratio is None else ratio >= 0.5),
            )
        )

    # 7: webhook endpoints.
    webhook_section(t, add, targets, machine)

    # 8: partitioned workers and replication.
    scale_section(t, add, machine)

    # 9: memory.
    if t.cases("memory"):
        add("## 9. Memory: peak RSS (VmHWM) of each latch process")
        add("")
        add("| process | peak RSS MB |")
        add("|---|---|")
        worst = None
        for case in t.cases("memory"):
            add(f"| latch {case} | {t.cell('memory', case, 'vmhwm_mb', 1)} |")
            value = max(t.values("memory", case, "vmhwm_mb") or [0])
            worst = value if worst is None else max(worst, value)
        add("")
        detail = ", ".join(
            f"{case} {fmt_num(max(t.values('memory', case, 'vmhwm_mb')), 1)} MB" for case in t.cases("memory")
        )
        targets.append(("each latch process < 64 MB RSS", detail, verdict(worst is not None and worst < 64)))

    plots = sorted(glob.glob(os.path.join(args.dir, "plots", "*.png")))
    if plots:
        add("## Plots")
        add("")
        for path in plots:
            name = os.path.basename(path)
            add(f"![{name}](plots/{name})")
            add("")

    out = [lines[0], ""]
    if targets:
        out.append("## Targets (measured, not asserted)")
        out.append("")
        out.append("| target | measured | |")
        out.append("|---|---|---|")
        for name, measured, result in targets:
            out.append(f"| {name} | {measured} | {result} |")
        out.append("")
    text = "\n".join(out + lines[1:]) + "\n"
    with open(os.path.join(args.dir, "results.md"), "w", encoding="utf-8") as dst:
        dst.write(text)
    with open(os.path.join(args.dir, "targets.json"), "w", encoding="utf-8") as dst:
        json.dump([{"target": n, "measured": m, "result": r} for n, m, r in targets], dst, indent=2)
    print(text)


# --- main -------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("statement-script")
    p.add_argument("--kind", choices=sorted(STATEMENT_MARKERS), required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--key", required=True)
    p.add_argument("--card", required=True)
    p.add_argument("--action-id", required=True)
    p.add_argument("--key-prefix", required=True)
    p.add_argument("--card-prefix", required=True)
    p.add_argument("--readers", type=int, required=True)
    p.add_argument("--holders", type=int, required=True)
    p.add_argument("--db", default="latch")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_statement_script)

    p = sub.add_parser("pgbench")
    p.add_argument("--results", required=True)
    p.add_argument("--stage", required=True)
    p.add_argument("--case", required=True)
    p.add_argument("--rep", type=int, required=True)
    p.add_argument("--stdout", required=True)
    p.add_argument("--log-prefix")
    p.add_argument("--cdf")
    p.add_argument("--rows-per-tx", type=int, default=1)
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("extra", nargs="*")
    p.set_defaults(func=cmd_pgbench)

    p = sub.add_parser("record")
    p.add_argument("--results", required=True)
    p.add_argument("--stage", required=True)
    p.add_argument("--case", required=True)
    p.add_argument("--rep", type=int, required=True)
    p.add_argument("--json", action="append", help="[PREFIX=]FILE")
    p.add_argument("pairs", nargs="*")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("prom-delta")
    p.add_argument("--before", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--metric", required=True)
    p.add_argument("--label", action="append")
    p.add_argument("--raw", action="store_true", help="keep the unit (not seconds -> ms)")
    p.set_defaults(func=cmd_prom_delta)

    p = sub.add_parser("cpu-delta")
    p.add_argument("--before", required=True)
    p.add_argument("--load-end", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--events", required=True, help="the latch-load readers JSON report of the load")
    p.set_defaults(func=cmd_cpu_delta)

    p = sub.add_parser("cpu-use")
    p.add_argument("--before", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--count", type=int, help="units of work done meanwhile (per-unit figures)")
    p.set_defaults(func=cmd_cpu_use)

    p = sub.add_parser("delivery-rate")
    p.add_argument("--stats", required=True, help="the simulator's /stats URL")
    p.add_argument("--expect", type=int, required=True, help="effects at both sinks in all")
    p.add_argument("--timeout", type=float, default=600)
    p.set_defaults(func=cmd_delivery_rate)

    p = sub.add_parser("prom-value")
    p.add_argument("--file", required=True)
    p.add_argument("--metric", required=True)
    p.add_argument("--label", action="append")
    p.add_argument("--default", help="printed when no sample matches (else an error)")
    p.set_defaults(func=cmd_prom_value)

    p = sub.add_parser("subscribers")
    p.add_argument("action", choices=("create", "sum"))
    p.add_argument("--admin", required=True, help="the simulator's admin URL")
    p.add_argument("--prefix", required=True, help="names: PREFIX1 .. PREFIXN")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--secret")
    p.add_argument("--field", help="sum: print this counter alone")
    p.set_defaults(func=cmd_subscribers)

    p = sub.add_parser("pending")
    p.add_argument("what", help="outbox, stream, or a sink name")
    p.set_defaults(func=cmd_pending)

    p = sub.add_parser("stream-last")
    p.add_argument("--monitor", required=True)
    p.add_argument("--stream", required=True)
    p.set_defaults(func=cmd_stream_last)

    p = sub.add_parser("summary")
    p.add_argument("file")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("value")
    p.add_argument("--results", required=True)
    p.add_argument("--stage", required=True)
    p.add_argument("--metric", required=True)
    p.add_argument("--case")
    p.set_defaults(func=cmd_value)

    p = sub.add_parser("machine")
    p.add_argument("--out", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--pg-bin", required=True)
    p.add_argument("--nats-server", required=True)
    p.add_argument("pairs", nargs="*")
    p.set_defaults(func=cmd_machine)

    p = sub.add_parser("report")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=cmd_report)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
