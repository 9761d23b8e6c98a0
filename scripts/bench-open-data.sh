#!/usr/bin/env bash
# Issue 12's open-data throughput, in one run on this machine: a three-tier
# federation (`cascade up`, release build) whose Jinan publishes
# CASCADE_BENCH_ENTRIES open entries (default 10000); once the national node
# holds them all, wrk measures there, one after another for CASCADE_BENCH_SECS
# each (default 10), with 2 threads and 32 connections:
#   baseline   GET /healthz (no work: the HTTP stack alone)
#   ckan-page  GET /api/3/action/package_search?rows=100&start=<middle>&sort=id asc
#   ckan-since GET package_search with fq=metadata_modified:[<now-1h> TO *]&rows=10
#   ckan-show  GET /api/3/action/package_show?id=<an entry>
#   dcat-ttl   GET /open/catalog.ttl (a page of 1,000 datasets)
#   dcat-jsonld GET /open/catalog.jsonld
# Each line prints requests/s, its ratio to the baseline, and latency p50/p99.
# Installs Debian's wrk if missing (needs root then).
set -euo pipefail
cd "$(dirname "$0")/.."
entries=${CASCADE_BENCH_ENTRIES:-10000}
secs=${CASCADE_BENCH_SECS:-10}
if ! command -v wrk >/dev/null; then
  apt-get update -q >/dev/null
  apt-get install -y -q wrk >/dev/null
fi
source scripts/lib/federation.sh
boot_federation
publish_open_entries "$entries"

python3 - "$manifest" "$entries" >"$work/urls" <<'PY'
import http.client, json, sys, time, urllib.parse
manifest = json.load(open(sys.argv[1]))
entries = int(sys.argv[2])
nodes = {n["id"]: n for n in manifest["nodes"]}
nat = urllib.parse.urlparse(nodes[100000]["admin_url"])
national = http.client.HTTPConnection(nat.hostname, nat.port, timeout=60)
national.request("GET", f"/api/3/action/package_search?rows=1&start={entries // 2}")
middle = json.loads(national.getresponse().read())["result"]["results"][0]["name"]
since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
base = f"http://{nat.hostname}:{nat.port}"
q = urllib.parse.quote
print("baseline", f"{base}/healthz")
print("ckan-page", f"{base}/api/3/action/package_search?rows=100&start={entries // 2}&sort={q('id asc')}")
print("ckan-since", f"{base}/api/3/action/package_search?rows=10&fq={q(f'metadata_modified:[{since} TO *]')}")
print("ckan-show", f"{base}/api/3/action/package_show?id={middle}")
print("dcat-ttl", f"{base}/open/catalog.ttl")
print("dcat-jsonld", f"{base}/open/catalog.jsonld")
PY

echo "open-data throughput at the national node, $entries open entries, wrk -t2 -c32 -d${secs}s --latency"
baseline=""
while read -r name url; do
  out=$(wrk -t2 -c32 -d"${secs}s" --latency "$url")
  rate=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  baseline=${baseline:-$rate}
  ratio=$(python3 -c "print(f'{$rate / $baseline:.4f}')")
  printf '%-12s %10s req/s  %8sx baseline  p50 %8s  p99 %8s  %s\n' "$name" "$rate" "$ratio" "$p50" "$p99" "$errors"
done <"$work/urls"
