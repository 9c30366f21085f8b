#!/usr/bin/env bash
# Make sure the local PostgreSQL server the collector tests use is running. Idempotent.
set -euo pipefail
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  exit 0
fi
version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$version" ]; then
  echo "keystep: error: PostgreSQL is not installed (run scripts/install-system.sh)" >&2
  exit 1
fi
if ! pg_lsclusters -h 2>/dev/null | awk '{print $2}' | grep -qx main; then
  pg_createcluster "$version" main >/dev/null
fi
conf=/etc/postgresql/$version/main
# Local trust auth on loopback, as the tests create and drop their own databases and roles.
if ! grep -q "keystep-test" "$conf/pg_hba.conf"; then
  sed -i '1i host all all 127.0.0.1/32 trust # keystep-test\nhost all all ::1/128 trust # keystep-test\nlocal all all trust # keystep-test' "$conf/pg_hba.conf"
fi
grep -q "^listen_addresses" "$conf/postgresql.conf" || echo "listen_addresses = '127.0.0.1'" >> "$conf/postgresql.conf"
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 50); do
  pg_isready -h 127.0.0.1 -p 5432 -q && exit 0
  sleep 0.2
done
echo "keystep: error: PostgreSQL did not start on 127.0.0.1:5432" >&2
exit 1
