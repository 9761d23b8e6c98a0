#!/usr/bin/env bash
# Fuzzes every decoder of untrusted bytes (crates/fuzzing, fuzz/) with
# libFuzzer, RUNS inputs per target (default 2,000,000), and prints the total.
# Needs the nightly toolchain (here already) and cargo-fuzz, which it installs.
# The committed seeds in fuzz/corpus/<target>/ are read, never written: what
# libFuzzer finds goes to a scratch corpus, and a crash leaves its input in
# fuzz/artifacts/<target>/ and stops the script.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
runs=${RUNS:-2000000}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cargo +nightly fuzz build -O
total=0
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  cargo +nightly fuzz run -O "$target" "$scratch/$target" "corpus/$target" -- \
    -runs="$runs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1 ||
    { tail -40 "$log"; echo "$target: crashed (input in fuzz/artifacts/$target/)"; exit 1; }
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1)
  echo "$target: $done_line"
  total=$((total + $(echo "$done_line" | awk '{print $2}')))
done
echo "total: $total executions, no crash"
