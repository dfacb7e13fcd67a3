#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages: PostgreSQL (initdb/pg_ctl)
# and Debian's Chromium for the browser tests. Uses apt-get only when root and missing;
# otherwise the tests that need a component skip with a reason (or fail when CI=true).
set -uo pipefail
missing=()
have_postgres() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_postgres || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test prerequisites missing (${missing[*]}); their tests will skip (fail under CI=true)." >&2
  exit 0
fi
echo "installing test prerequisites with apt-get: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2 3; do
  if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    exit 0
  fi
  echo "apt-get failed (attempt $attempt); retrying" >&2
  sleep 5
done
echo "could not install ${missing[*]}; their tests will skip (fail under CI=true)." >&2
exit 0
