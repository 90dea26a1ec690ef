# Shared set-up for tests/run and tests/demo: sourced, not run.
# Installs what is missing (Debian packages as root, a venv in .venv) and nothing else.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LOGSHIP_VENV:-$ROOT/.venv}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PACKAGE COMMAND...: install the Debian package when a command is missing
apt_install() {
    local package=$1; shift
    for command in "$@"; do
        if ! command -v "$command" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$command" ]; then
            echo "== installing $package (Debian package)"
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >/dev/null \
                || { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >/dev/null; }
            return
        fi
    done
}

# the venv with logship installed in editable mode, plus what the tests need
ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating $VENV"
        python3 -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" -c "import logship, pytest" 2>/dev/null \
        || [ "$ROOT/pyproject.toml" -nt "$VENV/.installed" ]; then
        echo "== installing logship and its dependencies into $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test]"
        touch "$VENV/.installed"
    fi
}

# the system RabbitMQ on localhost:5672, started when it is not running
ensure_rabbitmq() {
    apt_install rabbitmq-server rabbitmq-server
    if ! as_root rabbitmqctl -q status >/dev/null 2>&1; then
        echo "== starting rabbitmq-server"
        as_root service rabbitmq-server start >/dev/null 2>&1 \
            || as_root systemctl start rabbitmq-server \
            || { echo "could not start rabbitmq-server" >&2; exit 1; }
        as_root rabbitmqctl -q await_startup --timeout 60 >/dev/null
    fi
}

# Debian's rsyslog and syslog-ng conflict as packages: both are unpacked side by side into
# $RECEIVERS (apt-get download + dpkg -x, never installed), with the libraries they need.
RECEIVERS="${LOGSHIP_RECEIVERS:-/var/cache/logship-test/receivers}"
RECEIVER_PACKAGES="rsyslog rsyslog-openssl syslog-ng-core libestr0 libfastjson4 liblognorm5 libivykis0 libnet1 libpcre3"
ensure_syslog_receivers() {
    [ -x "$RECEIVERS/usr/sbin/rsyslogd" ] && [ -x "$RECEIVERS/usr/sbin/syslog-ng" ] && return
    echo "== unpacking rsyslog and syslog-ng into $RECEIVERS"
    as_root mkdir -p "$RECEIVERS.debs"
    as_root chmod 0777 "$RECEIVERS.debs"  # apt's _apt user downloads into it
    ( cd "$RECEIVERS.debs" && { apt-get download -q $RECEIVER_PACKAGES >/dev/null 2>&1 \
        || { as_root apt-get update -q >/dev/null && apt-get download -q $RECEIVER_PACKAGES >/dev/null; }; } )
    local staging="$RECEIVERS.tmp.$$"
    as_root mkdir -p "$staging"
    for deb in "$RECEIVERS.debs"/*.deb; do as_root dpkg -x "$deb" "$staging"; done
    as_root rm -rf "$RECEIVERS"
    as_root mv "$staging" "$RECEIVERS"  # atomic: a half-unpacked tree is never seen
}
