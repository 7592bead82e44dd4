#!/usr/bin/env bash
# The main job on the embedded defaults: set up (once) and run the 2023 cycle.
#   ./scripts/demo.sh [WORKDIR]      (default var/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
exec kcg demo --workdir "${1:-var/demo}"
