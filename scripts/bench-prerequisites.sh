#!/usr/bin/env bash
# Installs what `make bench` needs beyond Python packages: Debian's wrk (apt-get, only when
# root and missing), PostgreSQL for the PostgreSQL scenarios (same rule), and the Node.js
# peers (oidc-provider, oauth2-mock-server) with `npm ci` into the git-ignored
# benchmarks/node/node_modules. A missing piece is reported; its scenarios then fail
# visibly in the results file instead of stopping the whole run.
set -uo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null \
  || missing+=(postgresql)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing benchmark prerequisites with apt-get: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    for attempt in 1 2 3; do
      if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        break
      fi
      echo "apt-get failed (attempt $attempt); retrying" >&2
      sleep 5
    done
  else
    echo "benchmark prerequisites missing (${missing[*]}); install them to run every scenario." >&2
  fi
fi

if command -v npm >/dev/null 2>&1; then
  stamp=benchmarks/node/node_modules/.package-lock.json
  if [ ! -f "$stamp" ] || [ benchmarks/node/package-lock.json -nt "$stamp" ]; then
    (cd benchmarks/node && timeout 300 npm ci --silent --no-audit --no-fund) \
      || echo "npm ci failed: the Node.js peer scenarios will fail" >&2
  fi
else
  echo "npm missing: the Node.js peer scenarios will fail" >&2
fi
exit 0
