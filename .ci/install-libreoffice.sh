#!/usr/bin/env bash
# Install LibreOffice Writer (headless conversions for tests/e2e/test_protocol_libreoffice.py) and
# Debian's Python UNO bridge (tests/support/lo_host.py plays hosts in LibreOffice for
# tests/e2e/test_libreoffice_hosts.py). Idempotent. Needs root (CI runs as root).
set -euo pipefail
need=()
command -v soffice >/dev/null 2>&1 || need+=(libreoffice-writer)
/usr/bin/python3 -c "import uno" >/dev/null 2>&1 || need+=(python3-uno)
if [ ${#need[@]} -eq 0 ]; then
  echo "soffice and python3-uno already installed: $(command -v soffice)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${need[@]}"
command -v soffice
/usr/bin/python3 -c "import uno"
