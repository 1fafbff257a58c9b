# Helpers shared by the CI scripts that drive a fresh `integro serve`
# (schemathesis.sh, openapi_client.sh). Source it; it sets no shell options.

# The first operator of every CI server.
CI_EMAIL=ci@integro.test
CI_PASSWORD=ci-password-123

# pip_pinned SPEC...: installs exact versions (`name==version`); pip does
# nothing, and asks no index, when they are already installed.
pip_pinned() {
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check "$@"
}

# pinned_venv NAME SPEC...: a virtual environment holding exactly SPEC
# (`name==version`, dependencies included), kept between runs under
# ${INTEGRO_CI_CACHE:-~/.cache/integro-ci}/NAME-venv-<hash of the pins>;
# a change of pins makes a new one and removes the old. Puts it first on
# PATH.
pinned_venv() {
    local name=$1 cache venv old
    shift
    cache="${INTEGRO_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/integro-ci}"
    venv="$cache/$name-venv-$(printf '%s\n' "$@" "$(python3 -V)" | sha256sum | cut -c1-12)"
    if [ ! -f "$venv/.complete" ]; then
        echo "$name: creating $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        PATH="$venv/bin:$PATH" pip_pinned "$@"
        touch "$venv/.complete"
        for old in "$cache/$name"-venv-*; do
            if [ "$old" != "$venv" ]; then rm -rf "$old"; fi
        done
    fi
    export PATH="$venv/bin:$PATH"
    # Nothing to do, and no index asked, when the pins are installed.
    pip_pinned "$@"
}

# serve_integro BIN: starts `BIN serve` on a free port with a fresh data
# directory and the CI operator, and waits until it is ready. Sets CI_WORK (a
# scratch directory, removed at exit), CI_BASE (http://127.0.0.1:PORT) and
# CI_SERVER (its pid). At exit the server is stopped; when the script fails,
# the end of the server's log is printed first. Fails when the server is not
# ready within 30 s.
serve_integro() {
    local bin=$1 port
    CI_WORK=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    CI_BASE="http://127.0.0.1:$port"
    INTEGRO_DATA_DIR="$CI_WORK/data" INTEGRO_LISTEN="127.0.0.1:$port" INTEGRO_LOG=warn \
    INTEGRO_ADMIN_EMAIL="$CI_EMAIL" INTEGRO_ADMIN_PASSWORD="$CI_PASSWORD" \
    INTEGRO_RATE_LIMIT_PER_HOUR=10000000 INTEGRO_ACCESS_TOKEN_TTL_SECS=3600 INTEGRO_WORKERS=2 \
        "$bin" serve >"$CI_WORK/server.log" 2>&1 &
    CI_SERVER=$!
    trap stop_integro EXIT
    for _ in $(seq 1 60); do
        if curl -sf "$CI_BASE/readyz" >/dev/null; then
            return 0
        fi
        if ! kill -0 "$CI_SERVER" 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    echo "ci: $bin serve did not become ready at $CI_BASE" >&2
    return 1
}

stop_integro() {
    local status=$?
    if [ "$status" -ne 0 ] && [ -f "$CI_WORK/server.log" ]; then
        echo "ci: the end of the server's log:" >&2
        tail -n 40 "$CI_WORK/server.log" >&2
    fi
    kill "$CI_SERVER" 2>/dev/null || true
    wait "$CI_SERVER" 2>/dev/null || true
    rm -rf "$CI_WORK"
    return "$status"
}

# ci_json KEY: the field KEY of the JSON object on stdin.
ci_json() {
    python3 -c "import sys, json; print(json.load(sys.stdin)[\"$1\"])"
}

# ci_login: an access token of the CI operator.
ci_login() {
    curl -sf "$CI_BASE/api/v1/auth/login" -H 'content-type: application/json' \
        -d "{\"email\":\"$CI_EMAIL\",\"password\":\"$CI_PASSWORD\"}" | ci_json access_token
}
