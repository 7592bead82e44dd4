#!/usr/bin/env bash
# The layers and the style, held by tools (run by ./scripts/test.sh before the tests):
#   ruff         lint and import order, the whole tree
#   lint-imports the import contracts in pyproject.toml (core is pure, layers, no cycles)
#   mypy         --strict on kcg_mail and flows (pyproject.toml [tool.mypy])
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${VIRTUAL_ENV:-}" ] || . scripts/venv.sh
echo "lint: ruff"; ruff check --no-cache -q kcg_mail flows tests bench templates
echo "lint: import contracts"
if ! out=$(lint-imports --no-cache 2>&1); then echo "$out" | sed -n '/Contracts/,$p'; exit 1; fi
echo "$out" | grep -E "^Contracts:"
echo "lint: mypy --strict"; mypy --no-incremental
