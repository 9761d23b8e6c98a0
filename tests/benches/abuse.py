#!/usr/bin/env python3
"""Abuse figures of two `cascade` binaries, measured side by side in one run.

Each binary boots `topologies/three-tier.toml` (`cascade up`, fresh data folder)
and is attacked the same way; the figures are printed as a table, one column per
binary. Standard library only (no third-party client is needed for HTTP and
TCP; QUIC handshake floods are measured by `tests/abuse.rs`).

    cargo build --release --bin cascade
    python3 tests/benches/abuse.py --before OLD_BINARY --after target/release/cascade

Attacks: 200 concurrent audit queries that match nothing against a log of
25,000 records, while another node's /healthz is timed; a login flood (400
logins, 16 at a time, over 16 accounts) with a legitimate login timed during it
and resident memory read before and after; 2,000 half-open HTTP connections;
a revoked child's redials counted at its parent for 20 s.
"""

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

TOPOLOGY = os.path.join(os.path.dirname(__file__), "..", "..", "topologies", "three-tier.toml")
NATIONAL, PROVINCE, JINAN, QINGDAO = 8100, 8101, 8102, 8103
PROVIDER = "11370100MB0000001A"  # Jinan's big-data bureau (a valid GB 32100 code)


def call(port, method, path, token=None, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def rss_mib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


class Federation:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="cascade-abuse-")
        self.proc = subprocess.Popen(
            [binary, "up", TOPOLOGY, "--data", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while call(QINGDAO, "GET", "/healthz")[0] != 200:
            if time.time() > deadline or self.proc.poll() is not None:
                self.proc.kill()
                subprocess.run(["rm", "-rf", self.dir])
                raise RuntimeError(f"{binary} did not come up")
            time.sleep(0.1)
        self.tokens = {}
        for node in ("100000", "370000", "370100", "370200"):
            with open(os.path.join(self.dir, node, "admin.token")) as f:
                self.tokens[node] = f.read().strip()

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run(["rm", "-rf", self.dir])


def register_provider(fed):
    body = {"credit_code": PROVIDER, "name": "济南市大数据局", "division": 370100}
    call(JINAN, "POST", "/api/v1/organizations", fed.tokens["370100"], body)


def audit_flood(fed):
    """200 concurrent audit queries matching nothing, over 25,000 records."""
    register_provider(fed)
    token = fed.tokens["370100"]
    entry = {
        "classification": "3", "provider": PROVIDER, "summary": "x", "format": "database",
        "data_items": [{"name": "统一社会信用代码", "data_type": "C", "length": 18}],
        "share_type": "unconditional", "share_mode": "platform", "open_type": "closed",
        "update_cycle": "daily",
    }

    def save(i):
        return call(JINAN, "POST", "/api/v1/catalog", token, dict(entry, name=f"资源 {i}"))[0]

    with ThreadPoolExecutor(16) as pool:
        saved = sum(1 for s in pool.map(save, range(25_000)) if s == 201)
    stop = threading.Event()
    latencies = []

    def probe():
        while not stop.is_set():
            t = time.perf_counter()
            call(NATIONAL, "GET", "/healthz", timeout=60)
            latencies.append(time.perf_counter() - t)
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    time.sleep(0.5)
    idle = max(latencies) if latencies else 0.0
    before = len(latencies)
    start = time.perf_counter()
    with ThreadPoolExecutor(200) as pool:
        statuses = list(pool.map(
            lambda _: call(JINAN, "GET", "/api/v1/audit?kind=nonexistent", token, timeout=120)[0],
            range(200)))
    took = time.perf_counter() - start
    stop.set()
    prober.join()
    during = latencies[before:] or [0.0]
    ok = {s: statuses.count(s) for s in sorted(set(statuses))}
    return {
        "audit records written first (draft saves)": saved,
        "audit queries: statuses": ok,
        "audit queries: wall time (s)": round(took, 2),
        "national /healthz slowest before the flood (ms)": round(idle * 1000, 1),
        "national /healthz slowest during the flood (ms)": round(max(during) * 1000, 1),
        "national peer links dropped": links_dropped(fed),
    }


def links_dropped(fed):
    status, body = call(NATIONAL, "GET", "/api/v1/node", fed.tokens["100000"])
    if status != 200:
        return "node view unavailable"
    peers = json.loads(body).get("peers", [])
    return sum(1 for p in peers if p.get("state") != "connected")


def login_flood(fed):
    """400 logins, 16 at a time, over 16 accounts; one legitimate login timed.

    (16 at a time from one address stays within the address's free tries, so
    every login runs Argon2 in both binaries.)"""
    register_provider(fed)
    token = fed.tokens["370100"]
    password = "correct horse battery staple"
    for i in range(16):
        body = {"username": f"wang{i}", "password": password, "organization": PROVIDER,
                "roles": ["cataloger"]}
        call(JINAN, "POST", "/api/v1/accounts", token, body)
    call(JINAN, "POST", "/api/v1/accounts", token,
         {"username": "li", "password": password, "organization": PROVIDER, "roles": ["cataloger"]})
    before = rss_mib(fed.proc.pid)

    def login(i):
        return call(JINAN, "POST", "/api/v1/login", None,
                    {"username": f"wang{i % 16}", "password": password}, timeout=120)[0]

    legit = []

    def legitimate():
        time.sleep(1.0)
        t = time.perf_counter()
        status = call(JINAN, "POST", "/api/v1/login", None, {"username": "li", "password": password},
                      timeout=120)[0]
        legit.append((status, time.perf_counter() - t))

    other = threading.Thread(target=legitimate)
    other.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(login, range(400)))
    took = time.perf_counter() - start
    other.join()
    time.sleep(1.0)
    return {
        "login flood: statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "login flood: wall time (s)": round(took, 2),
        "legitimate login during the flood: status, seconds": (legit[0][0], round(legit[0][1], 2)),
        "resident memory before (MiB)": round(before),
        "resident memory after (MiB)": round(rss_mib(fed.proc.pid)),
        "resident memory peak (MiB)": round(rss_mib(fed.proc.pid, "VmHWM")),
    }


def slow_loris(fed):
    """2,000 connections that send half a request head, then nothing."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    socks = []
    for _ in range(2000):
        s = socket.create_connection(("127.0.0.1", JINAN))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        s.setblocking(False)
        socks.append(s)
    time.sleep(7.0)  # the new binary's header time-out is 5 s
    closed = 0
    for s in socks:
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    t = time.perf_counter()
    status = call(JINAN, "GET", "/healthz", timeout=30)[0]
    answer = time.perf_counter() - t
    for s in socks:
        s.close()
    return {
        "half-open connections closed by the server after 7 s": closed,
        "/healthz while they are held: status, ms": (status, round(answer * 1000, 1)),
    }


def revoked_child(fed):
    """A revoked child's redials, counted at its parent for 20 s."""
    status, _ = call(PROVINCE, "POST", "/api/v1/nodes/370200/revoke", fed.tokens["370000"],
                     {"reason": "decommissioned"})
    time.sleep(2.0)  # the revocation reaches the child and the link is cut

    def refusals():
        """Handshakes refused (the metric, where the binary has it), else None."""
        _, body = call(PROVINCE, "GET", "/metrics", fed.tokens["370000"])
        for line in body.decode(errors="replace").splitlines():
            if line.startswith("cascade_handshakes_refused_total"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def audit_count():
        _, body = call(PROVINCE, "GET", "/api/v1/audit?kind=peer.refused&limit=1000",
                       fed.tokens["370000"])
        try:
            return len(json.loads(body).get("records", []))
        except ValueError:
            return -1

    a0, r0 = audit_count(), refusals()
    time.sleep(20.0)
    records = audit_count() - a0
    # A binary without the metric writes one audit record per refusal.
    dials = records if r0 is None else int(refusals() - r0)
    return {
        "revoke status": status,
        "revoked child: redials refused at the parent in 20 s": dials,
        "revoked child: peer.refused audit records added in 20 s": records,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the baseline binary")
    parser.add_argument("--after", required=True, help="the binary under test")
    parser.add_argument("--only", help="one attack: slow_loris, revoked_child, login_flood or audit_flood")
    args = parser.parse_args()
    results = {}
    attacks = (slow_loris, revoked_child, login_flood, audit_flood)
    for attack in [a for a in attacks if args.only in (None, a.__name__)]:
        for name, binary in (("before", args.before), ("after", args.after)):
            fed = None
            try:
                fed = Federation(binary)
                for key, value in attack(fed).items():
                    results.setdefault(key, {})[name] = value
            finally:
                if fed is not None:
                    fed.stop()
            print(f"{attack.__name__} on {name}: done", flush=True)
    width = max(len(k) for k in results)
    print(f"{'':{width}}  {'before':>24}  {'after':>24}")
    for key, row in results.items():
        print(f"{key:{width}}  {str(row.get('before')):>24}  {str(row.get('after')):>24}")


if __name__ == "__main__":
    main()
