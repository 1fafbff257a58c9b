#!/usr/bin/env bash
# Hostile input against the served OpenAPI document: schemathesis (from PyPI,
# version pinned, fixed seed) drives the API of a fresh `integro serve` with an
# owner's API key, bounded in examples and time. Fails on any 5xx or any
# response that does not match the documented schema.
#
#   bash .ci/schemathesis.sh [path/to/integro]   (default target/debug/integro)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/debug/integro}"
VERSION=4.32.5
SECONDS_BUDGET="${SCHEMATHESIS_SECONDS:-150}"

if ! python3 -m schemathesis.cli --version 2>/dev/null | grep -q "$VERSION"; then
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
INTEGRO_DATA_DIR="$data" INTEGRO_LISTEN="127.0.0.1:$port" INTEGRO_LOG=warn \
INTEGRO_ADMIN_EMAIL=ci@integro.test INTEGRO_ADMIN_PASSWORD=ci-password-123 \
INTEGRO_RATE_LIMIT_PER_HOUR=10000000 INTEGRO_WORKERS=2 \
    "$BIN" serve >"$data/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 60); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.5; done

json() { python3 -c "import sys, json; print(json.load(sys.stdin)[\"$1\"])"; }
token=$(curl -sf "$base/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"ci@integro.test","password":"ci-password-123"}' | json access_token)
tenant=$(curl -sf "$base/api/v1/tenants" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"name":"Schemathesis"}' | json id)
key=$(curl -sf "$base/api/v1/api-keys" -H "authorization: Bearer $token" -H "x-integro-tenant: $tenant" \
    -H 'content-type: application/json' -d '{"name":"schemathesis","role":"owner"}' | json key)

# The coverage phase is left out: in this version it sometimes stops with an
# internal error (a KeyError in its schema walker), which would fail CI for
# nothing; fuzzing and the stateful phase run.
# Left out: the web channel's SSE stream (it never ends), the provider
# webhooks (signed by providers; covered by the property tests), and the
# endpoints that would revoke the key or the tenant this run authenticates
# with.
python3 -m schemathesis.cli run "$base/api/v1/openapi.json" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,response_schema_conformance \
    --exclude-path-regex '/web/.*/events$|/webhooks/|/auth/|/api-keys|/tenants|/users' \
    --phases examples,fuzzing,stateful \
    --max-examples 10 --max-time "$SECONDS_BUDGET" --workers 2 \
    --seed 20261122 --generation-deterministic \
    --suppress-health-check all
