#!/usr/bin/env bash
# Makes sure the services Closeloop's integration tests (and `closeloop serve`) need are up:
#   - PostgreSQL on 127.0.0.1:5432, trust auth for user `postgres` over TCP, database `test`;
#   - nats-server with JetStream on 127.0.0.1:4222.
# A service that answers is left alone. One installed but stopped is started. One absent is
# installed from the Debian packages (needs root, or sudo), set up and started. Then each
# must answer within SERVICES_WAIT_SECONDS (default 60); otherwise the script exits non-zero
# naming what failed and how to fix it. Also installs what some tests run: python3 with
# `cryptography` (the auditors' verifier) and `nats-py`, Go with Debian's nats.go (the
# integration guide's examples), and Debian's `chromium` (the dashboard test).
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
PG_TEST_DB=test
NATS_HOST=127.0.0.1
NATS_PORT=4222
NATS_BIN=/usr/sbin/nats-server
NATS_STORE=/var/lib/nats-server
NATS_LOG=/var/log/nats-server.log
WAIT_SECONDS=${SERVICES_WAIT_SECONDS:-60}

log() { echo "services: $*" >&2; }
fail() {
    echo "services: FAILED: $*" >&2
    exit 1
}

# Runs a command as root (directly, or through sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        fail "root is needed to run: $* (run this script as root, or install sudo)"
    fi
}

# Runs a command as the `postgres` OS user (the cluster's owner).
as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        "$@"
    else
        as_root runuser -u postgres -- "$@"
    fi
}

apt_updated=no
apt_install() {
    if [ "$apt_updated" = no ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
            fail "apt-get update failed: check the network and /etc/apt/sources.list"
        apt_updated=yes
    fi
    log "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
        fail "apt-get install -y $* failed"
}

# True if a TCP connection to $1:$2 opens (bash's /dev/tcp, in a subshell so it closes).
tcp_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# Waits until "$@" succeeds, at most WAIT_SECONDS.
wait_for() {
    local i
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        if "$@"; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

# --- PostgreSQL --------------------------------------------------------------------------

pg_answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -h "$PG_HOST" -p "$PG_PORT" -q
    else
        tcp_open "$PG_HOST" "$PG_PORT"
    fi
}

pg_version() {
    ls /etc/postgresql 2>/dev/null | head -1
}

pg_sql() { # DB SQL: runs SQL over TCP as the test user, as the tests do
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$1" -v ON_ERROR_STOP=1 -Atqc "$2"
}

# Trust auth for user postgres from 127.0.0.1: a rule ahead of the packaged ones.
pg_trust_localhost() {
    local version hba rule
    version=$(pg_version)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    rule="host    all             $PG_USER        127.0.0.1/32            trust"
    [ -f "$hba" ] || fail "PostgreSQL $version has no $hba; cannot set up trust auth"
    if ! grep -Eq "^host[[:space:]]+all[[:space:]]+($PG_USER|all)[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust" "$hba"; then
        log "adding trust auth for $PG_USER from 127.0.0.1 to $hba"
        as_root sed -i "1i $rule" "$hba"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload ||
            fail "cannot reload PostgreSQL $version after editing $hba"
    fi
}

pg_setup() {
    if ! pg_sql postgres "SELECT 1" >/dev/null 2>&1; then
        if [ -n "$(pg_version)" ]; then
            pg_trust_localhost
            wait_for pg_answers || true
        fi
        pg_sql postgres "SELECT 1" >/dev/null 2>&1 ||
            fail "PostgreSQL answers on $PG_HOST:$PG_PORT but refuses user $PG_USER without a password: add \`host all $PG_USER 127.0.0.1/32 trust\` at the top of pg_hba.conf and reload (or set CLOSELOOP_TEST_POSTGRES to a URL with credentials)"
    fi
    if [ -z "$(pg_sql postgres "SELECT 1 FROM pg_database WHERE datname = '$PG_TEST_DB'")" ]; then
        log "creating database $PG_TEST_DB"
        # Another process may create it at the same moment: check again rather than fail.
        pg_sql postgres "CREATE DATABASE $PG_TEST_DB" >/dev/null 2>&1 ||
            [ -n "$(pg_sql postgres "SELECT 1 FROM pg_database WHERE datname = '$PG_TEST_DB'")" ] ||
            fail "cannot create database $PG_TEST_DB as $PG_USER"
    fi
}

ensure_postgres() {
    if pg_answers; then
        command -v psql >/dev/null 2>&1 || apt_install postgresql-client
        pg_setup
        log "PostgreSQL answers on $PG_HOST:$PG_PORT (database $PG_TEST_DB ready)"
        return
    fi
    if [ -z "$(pg_version)" ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
        apt_install postgresql
    fi
    local version
    version=$(pg_version)
    [ -n "$version" ] || fail "PostgreSQL was installed but /etc/postgresql holds no cluster: create one with \`pg_createcluster <version> main\`"
    pg_trust_localhost
    log "starting PostgreSQL $version"
    # A cluster that is already starting or running makes this fail harmlessly: the wait
    # below decides.
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
    wait_for pg_answers ||
        fail "PostgreSQL $version does not answer on $PG_HOST:$PG_PORT after ${WAIT_SECONDS}s: read /var/log/postgresql/postgresql-$version-main.log, then \`pg_ctlcluster --skip-systemctl-redirect $version main start\`"
    pg_setup
    log "PostgreSQL $version started on $PG_HOST:$PG_PORT (database $PG_TEST_DB ready)"
}

# --- NATS --------------------------------------------------------------------------------

nats_answers() {
    tcp_open "$NATS_HOST" "$NATS_PORT"
}

ensure_nats() {
    if nats_answers; then
        log "nats-server answers on $NATS_HOST:$NATS_PORT"
        return
    fi
    [ -x "$NATS_BIN" ] || apt_install nats-server
    [ -x "$NATS_BIN" ] || fail "the nats-server package did not install $NATS_BIN"
    log "starting nats-server with JetStream"
    as_root mkdir -p "$NATS_STORE"
    as_root start-stop-daemon --start --oknodo --background --exec "$NATS_BIN" -- \
        -a "$NATS_HOST" -p "$NATS_PORT" -js -sd "$NATS_STORE" -l "$NATS_LOG" ||
        fail "start-stop-daemon could not start $NATS_BIN"
    wait_for nats_answers ||
        fail "nats-server does not answer on $NATS_HOST:$NATS_PORT after ${WAIT_SECONDS}s: read $NATS_LOG, then start it with \`start-stop-daemon --start --oknodo --background --exec $NATS_BIN -- -a $NATS_HOST -p $NATS_PORT -js -sd $NATS_STORE -l $NATS_LOG\`"
    log "nats-server started on $NATS_HOST:$NATS_PORT"
}

# Not a service, but the audit test runs the auditors' verifier (docs/verify.py), which needs
# Python with the `cryptography` package (Ed25519).
ensure_python_cryptography() {
    if python3 -c 'import cryptography' >/dev/null 2>&1; then
        return
    fi
    apt_install python3 python3-cryptography
    python3 -c 'import cryptography' >/dev/null 2>&1 ||
        fail "python3 on PATH ($(command -v python3)) cannot import cryptography: \`python3 -m pip install cryptography\`"
    log "python3 with cryptography installed"
}

# The integration guide's examples (docs/examples/) run against `serve` in the tests: the
# Python one needs `nats-py` (PyPI only: Debian has no package) and `cryptography`; the Go
# one builds offline against Debian's nats.go (GOPATH mode).
ensure_python_nats() {
    if python3 -c 'import nats' >/dev/null 2>&1; then
        return
    fi
    log "installing nats-py with pip"
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    python3 -m pip install -q nats-py >/dev/null 2>&1 ||
        python3 -m pip install -q --break-system-packages nats-py >/dev/null 2>&1 ||
        fail "cannot install nats-py: \`python3 -m pip install nats-py\`"
    python3 -c 'import nats' >/dev/null 2>&1 ||
        fail "python3 on PATH ($(command -v python3)) cannot import nats: \`python3 -m pip install nats-py\`"
    log "python3 with nats-py installed"
}

ensure_go_nats() {
    if command -v go >/dev/null 2>&1 && [ -d /usr/share/gocode/src/github.com/nats-io/nats.go ]; then
        return
    fi
    apt_install --no-install-recommends golang-go golang-github-nats-io-go-nats-dev
    command -v go >/dev/null 2>&1 || fail "golang-go did not install go"
    log "go with nats.go installed"
}

# Not a service either: the dashboard test opens the page in headless Chromium, Debian's
# package (never a browser downloaded by a tool).
ensure_chromium() {
    if [ -x /usr/bin/chromium ]; then
        return
    fi
    apt_install chromium
    [ -x /usr/bin/chromium ] || fail "the chromium package did not install /usr/bin/chromium"
    log "chromium installed"
}

ensure_postgres
ensure_nats
ensure_python_cryptography
ensure_python_nats
ensure_go_nats
ensure_chromium
