#!/usr/bin/env bash
# Run the whole test suite, real servers included, in parallel on every core:
#   ./scripts/test.sh [pytest args]
# Installs what the tests need when it is missing: the Python packages in
# .venv, and (as root, with apt) Dovecot + Postfix and LibreOffice Writer from
# Debian. The tests start their own private servers (Dovecot, Postfix, a
# Prefect server) on loopback and stop them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  bash .ci/install-mail.sh
  bash .ci/install-libreoffice.sh
  bash .ci/install-browser.sh
fi
. scripts/venv.sh
# Lint, import contracts and the core's types first (seconds); KCG_SKIP_LINT=1 skips them.
[ "${KCG_SKIP_LINT:-0}" = 1 ] || bash scripts/lint.sh
# In parallel on every core (pytest-xdist): one worker per core, each with its own
# servers and temp dirs, a test file's tests on one worker (their module fixtures
# start once); KCG_TEST_WORKERS=N chooses N, 0 runs in this process. Passing -n,
# --numprocesses or -p yourself leaves the choice to you. The 10 slowest tests
# are listed at the end.
par=()
case " $* " in
  *" -n "*|*" -n"[0-9]*|*" --numprocesses"*|*" -p "*) ;;
  *) par=(-n "${KCG_TEST_WORKERS:-auto}" --dist loadfile) ;;
esac
exec python -m pytest "${par[@]}" --durations=10 "$@"
