#!/usr/bin/env bash
# Makes sure Dovecot's IMAP server (Debian package dovecot-imapd) and the
# aiosmtpd SMTP sink (python3-aiosmtpd) are installed for the IMAP and
# notification tests. The tests start their own throwaway dovecot and
# aiosmtpd on 127.0.0.1 with configs in temp dirs; nothing is started here
# and the system's dovecot service is left alone. Idempotent.
set -euo pipefail

missing=()
[ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-imapd)
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "services: installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    # The package's own service must not start (no init system in CI); policy-rc.d refusals are fine.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "services: ${missing[*]} not installed; install them (apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
echo "services: dovecot $(/usr/sbin/dovecot --version 2>/dev/null | cut -d' ' -f1) and aiosmtpd available"
