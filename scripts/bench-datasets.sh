#!/usr/bin/env bash
# Issue 10's numbers, all in one run on this machine:
#   1. the dataset bench (raw quinn, a raw quinn relay, fetches over one and two
#      hops, the incremental version, catalog latency during a fetch, peak RSS)
#      on plain loopback;
#   2. the same bench on a loopback shaped to 1 Gbit/s (tc tbf, in a network
#      namespace of its own; this kernel has no netem, so no added delay). All
#      links share that one loopback, so a relayed transfer, which crosses it
#      twice, gets half of it;
#   3. the same number of bytes over HTTPS from nginx, fetched by curl to disk;
#   4. the same bytes by rsync over ssh, to disk.
# Content size: CASCADE_BENCH_MIB (default 1024). Needs root (the namespace,
# sshd); installs Debian's nginx-light, openssh-server and rsync if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root (network namespace, sshd)" >&2; exit 1; }
mib=${CASCADE_BENCH_MIB:-1024}
bytes=$((mib << 20))

missing=""
command -v nginx >/dev/null || missing+=" nginx-light"
[ -x /usr/sbin/sshd ] || missing+=" openssh-server"
command -v rsync >/dev/null || missing+=" rsync"
command -v curl >/dev/null || missing+=" curl"
command -v openssl >/dev/null || missing+=" openssl"
if [ -n "$missing" ]; then
  apt-get update -q >/dev/null
  apt-get install -y -q $missing >/dev/null
fi

work=$(mktemp -d)
namespace=cascade-bench-$$
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  [ -f "$work/sshd.pid" ] && kill "$(cat "$work/sshd.pid")" 2>/dev/null || true
  ip netns delete "$namespace" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
gib_per_s() { python3 -c "print(f'{$bytes / (1 << 30) / $1:.2f}')"; }
seconds() { python3 -c 'import time; print(time.monotonic())'; }
elapsed() { python3 -c "import time; print(time.monotonic() - $1)"; }

echo "== content: $mib MiB of random bytes"
head -c "$bytes" /dev/urandom >"$work/content"

echo "== the dataset bench, plain loopback"
cargo bench -p cascade-tests --bench datasets --no-run 2>&1 | tail -1
bench=$(cargo bench -p cascade-tests --bench datasets --no-run 2>&1 | grep -o 'target/release/deps/datasets-[0-9a-f]*' | tail -1)
CASCADE_BENCH_MIB=$mib "$bench" --bench 2>"$work/plain.log" | tee "$work/plain.txt" ||
  { tail -20 "$work/plain.log"; exit 1; }

echo "== the dataset bench, loopback shaped to 1 Gbit/s"
ip netns add "$namespace"
ip netns exec "$namespace" ip link set lo up
ip netns exec "$namespace" tc qdisc replace dev lo root tbf rate 1gbit burst 512kb latency 20ms
CASCADE_BENCH_MIB=$mib ip netns exec "$namespace" "$bench" --bench 2>"$work/shaped.log" | tee "$work/shaped.txt" ||
  { tail -20 "$work/shaped.log"; exit 1; }

echo "== curl over HTTPS from nginx (TLS 1.3, ECDSA P-256), to disk"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
https_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<EOF
# The content sits in this run's private folder.
user $(whoami);
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events {}
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$https_port ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    root $work;
  }
}
EOF
nginx -c "$work/nginx.conf" -p "$work/nginx"
for _ in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$https_port/" && break || sleep 0.1; done
started=$(seconds)
curl -fsk --http1.1 -o "$work/by-curl" "https://127.0.0.1:$https_port/content"
curl_s=$(elapsed "$started")
cmp -s "$work/content" "$work/by-curl" || { echo "curl's copy differs" >&2; exit 1; }
echo "curl over HTTPS: $(gib_per_s "$curl_s") GiB/s"
rm -f "$work/by-curl"

echo "== rsync over ssh, to disk"
ssh_port=$(free_port)
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$work/host"
ssh-keygen -q -t ed25519 -N '' -f "$work/user"
cp "$work/user.pub" "$work/authorized_keys"
cat >"$work/sshd_config" <<EOF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $work/host
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
UsePAM no
PidFile $work/sshd.pid
EOF
/usr/sbin/sshd -f "$work/sshd_config"
ssh_cmd="ssh -p $ssh_port -i $work/user -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
for _ in $(seq 100); do $ssh_cmd "$(whoami)@127.0.0.1" true 2>/dev/null && break || sleep 0.1; done
started=$(seconds)
rsync -e "$ssh_cmd" "$(whoami)@127.0.0.1:$work/content" "$work/by-rsync"
rsync_s=$(elapsed "$started")
cmp -s "$work/content" "$work/by-rsync" || { echo "rsync's copy differs" >&2; exit 1; }
echo "rsync over ssh: $(gib_per_s "$rsync_s") GiB/s"

rate() {
  local r
  r=$(grep "$1" "$2" | grep -o '[0-9.]* GiB/s' | head -1 | cut -d' ' -f1 || true)
  [ -n "$r" ] || { echo "no '$1' line in the bench's output" >&2; exit 1; }
  echo "$r"
}
one=$(rate 'fetch, 1 hop' "$work/plain.txt")
two=$(rate 'fetch, 2 hops' "$work/plain.txt")
curl_rate=$(gib_per_s "$curl_s")
rsync_rate=$(gib_per_s "$rsync_s")
echo
echo "== summary ($mib MiB, one run)"
echo "plain loopback:"
grep -E 'raw quinn|fetch,' "$work/plain.txt"
echo "loopback shaped to 1 Gbit/s:"
grep -E 'raw quinn|fetch,' "$work/shaped.txt"
echo "curl over HTTPS $curl_rate GiB/s, rsync over ssh $rsync_rate GiB/s"
python3 -c "print(f'fetch over 1 hop: {$one / $curl_rate:.2f}x curl, {$one / $rsync_rate:.2f}x rsync; over 2 hops: {$two / $rsync_rate:.2f}x rsync')"
