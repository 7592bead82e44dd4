#!/usr/bin/env bash
# Install LibreOffice Writer (headless conversions for tests/test_protocol_libreoffice.py).
# Idempotent: does nothing when soffice is already on PATH. Needs root (CI runs as root).
set -euo pipefail
if command -v soffice >/dev/null 2>&1; then
  echo "soffice already installed: $(command -v soffice)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends libreoffice-writer
command -v soffice
