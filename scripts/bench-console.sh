#!/usr/bin/env bash
# Issue 12's console numbers, in one run on this machine: a three-tier
# federation (`cascade up`, release build) whose Jinan publishes
# CASCADE_BENCH_ENTRIES open entries (default 10000); once the national node
# holds them all, Debian's chromium (Playwright) loads the national node's
# console: the bytes of its first load, and the time to first render of the
# catalog screen (median of CASCADE_BENCH_RUNS, default 7) against the
# federation screen as the baseline. Installs chromium and the CJK fonts with
# apt, and Playwright in a virtual environment under target/tmp, if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
entries=${CASCADE_BENCH_ENTRIES:-10000}
runs=${CASCADE_BENCH_RUNS:-7}
if [ ! -x /usr/bin/chromium ] || ! dpkg-query -W fonts-noto-cjk >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends chromium fonts-noto-cjk >/dev/null
fi
venv=target/tmp/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import playwright" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/conformance/requirements.txt
fi
source scripts/lib/federation.sh
boot_federation
publish_open_entries "$entries"
national=$(python3 -c 'import json,sys; n={x["id"]: x for x in json.load(open(sys.argv[1]))["nodes"]}[100000]; print(n["admin_url"], n["token"])' "$manifest")
echo "the console at the national node, $entries entries in its catalog"
# shellcheck disable=SC2086
"$venv/bin/python" scripts/lib/measure_console.py $national "$runs"
