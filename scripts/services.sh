#!/usr/bin/env bash
# Makes sure the services the test suite talks to are running:
# PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`).
# Idempotent: does nothing when they already run.
set -euo pipefail

pg_ready() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h 127.0.0.1 -p 5432
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

if ! pg_ready; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "services: installing PostgreSQL (Debian package postgresql)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      echo "services: PostgreSQL is not installed; install it or set LEADSIFT_TEST_PG=postgres://USER@HOST:PORT/DB" >&2
      exit 1
    fi
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$version/main
  # Local test server: trust connections from this machine only.
  if ! grep -q "leadsift-tests" "$conf/pg_hba.conf" 2>/dev/null; then
    printf '# leadsift-tests\nhost all all 127.0.0.1/32 trust\nlocal all all trust\n' | cat - "$conf/pg_hba.conf" > "$conf/pg_hba.conf.new"
    mv "$conf/pg_hba.conf.new" "$conf/pg_hba.conf"
  fi
  echo "services: starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
  pg_ready || { echo "services: PostgreSQL did not start" >&2; exit 1; }
fi

# The tests create their own databases through the `test` database.
if command -v psql >/dev/null 2>&1; then
  if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
  fi
fi
echo "services: PostgreSQL ready on 127.0.0.1:5432"

# Dovecot (IMAP tests) and aiosmtpd (notification tests).
"$(dirname "$0")/dovecot.sh"
# Kafka needs no service: the tests serve librdkafka's mock cluster in-process
# (set LEADSIFT_TEST_KAFKA=host:port to also run the queue suite on a real
# broker). Building librdkafka (rdkafka-sys) needs a C toolchain and make.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "services: installing $*"
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; })
  else
    echo "services: $* missing; install it (Debian: apt-get install -y $*)" >&2
    exit 1
  fi
}
if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
  apt_install build-essential
fi
# The browser test drives Debian's Chromium headless through chromedriver.
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium chromium-driver
fi
echo "services: $(chromium --version 2>/dev/null | head -n 1) for the browser test"
# `docker-compose config` validates the deployment file without a Docker engine.
if ! command -v docker-compose >/dev/null 2>&1; then
  apt_install docker-compose
fi
echo "services: docker-compose $(docker-compose version --short 2>/dev/null || echo '?') for compose validation"
