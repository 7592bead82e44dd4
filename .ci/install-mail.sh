#!/usr/bin/env bash
# Install Dovecot (IMAP + LMTP) and Postfix for the real-server mail tests, and
# OpenDKIM + OpenDMARC for the reference MX (tests/support/reference_mx.py).
#
# Idempotent. The tests start private, unprivileged instances from a temp dir
# (tests/support/mailserver.py, tests/support/reference_mx.py); no system dovecot, postfix,
# opendkim or opendmarc instance is configured, started or needed. Run as root.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

need=()
for bin in /usr/sbin/dovecot /usr/sbin/postfix /usr/lib/dovecot/imap /usr/lib/dovecot/lmtp \
           /usr/sbin/opendkim /usr/sbin/opendmarc; do
  [ -x "$bin" ] || need+=("$bin")
done

if [ "${#need[@]}" -gt 0 ]; then
  # Postfix: "No configuration" -> no main.cf, no system instance started.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string localhost" | debconf-set-selections

  # Keep package scripts from starting services on a machine without init.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
  fi

  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ] \
     || [ "${KCG_APT_UPDATE:-0}" = 1 ]; then
    apt-get update -q
  fi
  pkgs=(dovecot-imapd dovecot-lmtpd postfix opendkim opendmarc)
  if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}"; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${pkgs[@]}"
  fi

  if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
fi

# Make sure no system instance is running (the package scripts may have tried).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now dovecot.service postfix.service opendkim.service opendmarc.service >/dev/null 2>&1 || true
fi
if [ -f /run/dovecot/master.pid ]; then
  kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
fi
if [ -f /var/spool/postfix/pid/master.pid ] && [ -f /etc/postfix/main.cf ]; then
  postfix stop >/dev/null 2>&1 || true
fi

/usr/sbin/dovecot --version
/usr/sbin/postconf -d mail_version 2>/dev/null || true
echo "install-mail: dovecot + postfix + opendkim + opendmarc ready (no system instance running)"
