#!/usr/bin/env bash
# The web dashboard in a real browser: tests/browser/dashboard.py drives
# Debian's Chromium with Playwright for Python against a fresh `integro
# serve` (SQLite, then a fresh PostgreSQL database when
# INTEGRO_TEST_POSTGRES_URL is set), with Twilio's Messages API mocked
# locally, and checks every page visited with axe-core. Playwright's own
# browser download is never used (`playwright install` is not run): the
# suite launches /usr/bin/chromium, installed here from Debian when missing.
# The Python packages are pinned, dependencies included, in a virtual
# environment kept between runs (a change of pins makes a new one); the
# axe-core script ships inside axe-playwright-python. Fails on any failure.
#
#   bash .ci/browser.sh [path/to/integro] [--screenshots DIR] [--database sqlite|postgres|all]
#   env: INTEGRO_CI_CACHE (default ~/.cache/integro-ci),
#        INTEGRO_TEST_POSTGRES_URL (optional: the PostgreSQL run)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/lib.sh
source .ci/lib.sh
BIN="${1:-target/debug/integro}"
shift || true

# Every package in the environment, dependencies included, at an exact
# version.
PINS=(
    playwright==1.65.3              # Playwright's driver (Node inside the wheel)
    axe-playwright-python==0.1.8    # bundles axe-core 4.12.1 (axe.min.js)
    greenlet==3.5.6
)

started=$(date +%s)
if [ ! -x /usr/bin/chromium ]; then
    echo "browser: installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

pinned_venv browser "${PINS[@]}"
# Playwright never fetches a browser of its own here.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
echo "browser: $(/usr/bin/chromium --version 2>/dev/null | tail -n1), Playwright $(python3 -c 'import importlib.metadata as m; print(m.version("playwright"))'), axe-playwright-python $(python3 -c 'import importlib.metadata as m; print(m.version("axe-playwright-python"))')"

status=0
python3 tests/browser/dashboard.py "$BIN" "$@" || status=$?
echo "browser: done in $(($(date +%s) - started)) s"
exit "$status"
