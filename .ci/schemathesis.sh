#!/usr/bin/env bash
# Hostile input against the served OpenAPI document: schemathesis (from PyPI,
# version pinned, fixed seed) drives every operation of a fresh `integro
# serve`, bounded in examples and time. Fails on any 5xx or any response that
# does not match the documented schema. Nothing is kept between runs.
#
#   bash .ci/schemathesis.sh [path/to/integro]   (default target/debug/integro)
#   env: SCHEMATHESIS_SECONDS (default 180): the first run's budget; the
#        second gets a third of it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/lib.sh
source .ci/lib.sh
BIN="${1:-target/debug/integro}"
VERSION=4.32.5
SECONDS_BUDGET="${SCHEMATHESIS_SECONDS:-180}"

pip_pinned "schemathesis==$VERSION"
serve_integro "$BIN"

token=$(ci_login)
tenant=$(curl -sf "$CI_BASE/api/v1/tenants" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"name":"Schemathesis"}' | ci_json id)
key=$(curl -sf "$CI_BASE/api/v1/api-keys" -H "authorization: Bearer $token" -H "x-integro-tenant: $tenant" \
    -H 'content-type: application/json' -d '{"name":"schemathesis","role":"owner"}' | ci_json key)

# Nothing from earlier runs: schemathesis' cache of findings (by default
# ./.schemathesis) is off, --generation-deterministic means no example
# database, and Hypothesis' own files go to the scratch directory. The web
# channel's event streams (the API's and the website visitors') and the
# workflow event stream never end by themselves: each request reads one for
# 2 s at most.
export HYPOTHESIS_STORAGE_DIRECTORY="$CI_WORK/hypothesis"
cat >"$CI_WORK/schemathesis.toml" <<'TOML'
[cache]
enabled = false

[[operations]]
include-path-regex = '^/api/v1/(web(-public)?/[^/]+/events|workflow-events)$'
request-timeout = 2.0
max-stream-events = 5
TOML

# One worker: a run is bound by Python's interpreter lock, so a second one
# adds no throughput (measured), and with two, this version's coverage phase
# sometimes stops with an internal error (a race in Hypothesis' parsing of
# lambda sources: "AST constructor recursion depth mismatch").
st() {
    python3 -m schemathesis.cli --config-file "$CI_WORK/schemathesis.toml" \
        run "$CI_BASE/api/v1/openapi.json" \
        --checks not_a_server_error,response_schema_conformance \
        --phases examples,coverage,fuzzing,stateful \
        --workers 1 --seed 20261122 --generation-deterministic \
        --suppress-health-check all --max-examples 50 \
        "$@"
}

# 1. Every operation as an owner's API key of one tenant, except revoking an
#    API key: that could revoke this very key (its id is in /auth/me and in
#    the key list) and leave the rest of the run unauthenticated; run 2
#    covers it. Without a provider's signature the webhooks answer 401 or
#    404. Sign-in is throttled per address, so most fuzzed sign-ins answer
#    429 (documented). Three operations that call X or an LLM at once and
#    answer 502 when it fails (CI reaches neither api.x.com nor an LLM)
#    are left out: their input checks are in tests/api/x_oauth.rs,
#    x_trends.rs and x_posts.rs.
echo "schemathesis: every operation as a tenant owner's API key"
st --header "Authorization: Bearer $key" \
    --exclude-name 'DELETE /api/v1/api-keys/{id}' \
    --exclude-name 'POST /api/v1/accounts/{id}/x/subscribe' \
    --exclude-name 'GET /api/v1/trends' \
    --exclude-name 'POST /api/v1/posts/drafts' \
    --max-time "$SECONDS_BUDGET"

# 2. What that key may not do: the operators' operations (tenants, users)
#    and, beside them, sign-in, sessions and API keys, revoking included, as
#    the CI operator acting in the same tenant. An operator cannot disable
#    their own account (409); deleting the tenant ends only what acts in it.
echo "schemathesis: tenants, users, auth and API keys as a platform operator"
st --header "Authorization: Bearer $token" --header "X-Integro-Tenant: $tenant" \
    --include-path-regex '^/api/v1/(tenants|users|auth|api-keys)(/|$)' \
    --max-time "$((SECONDS_BUDGET / 3))"
