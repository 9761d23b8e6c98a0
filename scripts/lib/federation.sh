# Sourced by the bench scripts: boots a three-tier `cascade up` (release
# build) in a temporary folder, stopped and removed when the script exits, and
# publishes open entries at Jinan until the national node holds them.
#   boot_federation            sets $work (the folder) and $manifest
#   publish_open_entries N     N open entries, waited for at the national node

boot_federation() {
  cargo build --release --bin cascade -q
  work=$(mktemp -d)
  manifest="$work/data/federation.json"
  trap 'stop_federation' EXIT
  target/release/cascade up topologies/three-tier.toml --data "$work/data" --admin-port-base 0 \
    >"$work/up.out" 2>"$work/up.log" &
  up=$!
  for _ in $(seq 600); do [ -f "$manifest" ] && grep -q "press Ctrl-C" "$work/up.out" && break; sleep 0.1; done
  grep -q "press Ctrl-C" "$work/up.out" || { cat "$work/up.log" >&2; exit 1; }
}

stop_federation() {
  [ -n "${up:-}" ] && kill -TERM "$up" 2>/dev/null && wait "$up" 2>/dev/null || true
  rm -rf "$work"
}

publish_open_entries() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/publish_open_entries.py" "$manifest" "$1"
}
