# Shared steps for scripts/run.sh and scripts/test.sh. Idempotent: installs and starts only what is missing.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HUB_VENV:-$ROOT/.venv}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

say() { printf '>> %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {  # host port seconds
  local i
  for ((i = 0; i < $3 * 4; i++)); do port_open "$1" "$2" && return 0; sleep 0.25; done
  return 1
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

ensure_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtual environment in $VENV"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
      apt_install python3-venv
      python3 -m venv "$VENV"
    fi
  fi
  if ! "$VENV/bin/python" -c 'import hub, pytest, aio_pika' 2>/dev/null \
      || [ "$ROOT/pyproject.toml" -nt "$VENV/.hub-installed" ]; then
    say "installing the hub and its dependencies"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
    touch "$VENV/.hub-installed"
  fi
}

ensure_rabbitmq() {
  if port_open 127.0.0.1 5672; then return 0; fi
  if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    say "installing RabbitMQ (Debian package rabbitmq-server)"
    apt_install rabbitmq-server
  fi
  if ! port_open 127.0.0.1 5672; then
    say "starting RabbitMQ"
    # A node left with its app stopped (`rabbitmqctl stop_app`, as the fault tests do, by a run that
    # was killed half-way) is running, so `rabbitmq-server -detached` would fail: start its app.
    if $SUDO rabbitmqctl -q ping >/dev/null 2>&1; then
      $SUDO rabbitmqctl start_app >/dev/null 2>&1 || true
    else
      $SUDO rabbitmq-server -detached >/dev/null 2>&1 || true
    fi
    wait_port 127.0.0.1 5672 90 || { say "RabbitMQ did not come up on 127.0.0.1:5672"; return 1; }
  fi
  $SUDO rabbitmqctl await_startup >/dev/null 2>&1 || true
}

ensure_postgres() {
  if port_open 127.0.0.1 5432; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "installing PostgreSQL (Debian package postgresql) with trust auth on 127.0.0.1 for the tests"
    apt_install postgresql
    local conf
    conf="$(ls -d /etc/postgresql/*/main | head -n1)/pg_hba.conf"
    $SUDO sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$conf"
  fi
  say "starting PostgreSQL"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_port 127.0.0.1 5432 60 || { say "PostgreSQL did not come up on 127.0.0.1:5432"; return 1; }
}

ensure_prometheus() {  # the binaries only, for the observability tests; the Debian service is not used
  if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then return 0; fi
  say "installing Prometheus (Debian package prometheus; the tests run their own process on a free port)"
  apt_install --no-install-recommends prometheus
}
