#!/usr/bin/env bash
# The whole test suite: lint, types, unit, integration (real RabbitMQ + PostgreSQL) and e2e tests.
# Installs and starts what is missing. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_python
ensure_rabbitmq
ensure_postgres
ensure_prometheus
say "ruff"
"$VENV/bin/ruff" check hub tests bench tools
say "mypy --strict"
"$VENV/bin/mypy"
say "pytest"
export HUB_REQUIRE_SERVERS=1
exec "$VENV/bin/pytest" -q "$@"
