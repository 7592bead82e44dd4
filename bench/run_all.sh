#!/usr/bin/env bash
# Run every benchmark and print the summary table (same as: python -m bench).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m bench "$@"
