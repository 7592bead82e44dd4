#!/usr/bin/env bash
# Install Debian's Chromium for the browser test (tests/e2e/test_browser.py): the
# Prefect UI is opened in headless Chromium through Playwright (from PyPI),
# pointed at /usr/bin/chromium, so Playwright downloads no browser of its own.
# Idempotent. Run as root.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [ ! -x /usr/bin/chromium ]; then
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ] \
     || [ "${KCG_APT_UPDATE:-0}" = 1 ]; then
    apt-get update -q
  fi
  if ! apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
  fi
fi

/usr/bin/chromium --version 2>/dev/null || true
echo "install-browser: chromium ready"
