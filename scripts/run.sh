#!/usr/bin/env bash
# Set up and run the hub on this machine: installs what is missing (RabbitMQ included), migrates the
# embedded SQLite database, creates demo tokens (printed once, kept in var/demo-tokens.txt) and serves
# on http://127.0.0.1:8080 until Ctrl-C.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_python
ensure_rabbitmq
export HUB_DATABASE_URL="${HUB_DATABASE_URL:-sqlite+aiosqlite:///$ROOT/var/hub.sqlite}"
mkdir -p "$ROOT/var"
"$VENV/bin/hub" migrate
"$VENV/bin/hub" routes check
if [ ! -s "$ROOT/var/demo-tokens.txt" ]; then
  say "creating demo tokens"
  {
    echo "gemeente 0363 $("$VENV/bin/hub" parties token create --party 0363 --label demo)"
    echo "aanbieder 12345678 $("$VENV/bin/hub" parties token create --party 12345678 --label demo)"
    echo "cak CAK $("$VENV/bin/hub" parties token create --party CAK --label demo)"
  } > "$ROOT/var/demo-tokens.txt"
  chmod 600 "$ROOT/var/demo-tokens.txt"
fi
say "demo tokens (var/demo-tokens.txt):"
cat "$ROOT/var/demo-tokens.txt" >&2
say "try: curl -X POST -H 'Authorization: Bearer <token of 0363>' -H 'Content-Type: application/xml' --data-binary @examples/berichten/iwmo-3.2/WMO301.xml http://127.0.0.1:8080/v1/berichten"
"$VENV/bin/hub" worker --metrics-port "${HUB_WORKER_METRICS_PORT:-9101}" &
worker=$!
trap 'kill "$worker" 2>/dev/null; wait "$worker" 2>/dev/null' EXIT
"$VENV/bin/hub" serve --host "${HUB_HOST:-127.0.0.1}" --port "${HUB_PORT:-8080}"
