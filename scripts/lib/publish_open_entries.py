"""Publishes N open entries at Jinan (registering its bureau first) and waits
until the national node holds them all. Usage: publish_open_entries.py MANIFEST N"""
import http.client, json, sys, time, urllib.parse

manifest = json.load(open(sys.argv[1]))
entries = int(sys.argv[2])
nodes = {n["id"]: n for n in manifest["nodes"]}


def client(node):
    url = urllib.parse.urlparse(node["admin_url"])
    return http.client.HTTPConnection(url.hostname, url.port, timeout=60), node["token"]


def call(conn, token, method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise SystemExit(f"{method} {path}: {resp.status} {data[:300]!r}")
    return json.loads(data) if data else None


jinan, token = client(nodes[370100])
call(jinan, token, "POST", "/api/v1/organizations",
     {"credit_code": "11370100MB0000001A", "name": "济南市大数据局", "division": 370100})
for n in range(entries):
    saved = call(jinan, token, "POST", "/api/v1/catalog", {
        "name": f"开放数据集 {n}", "classification": "3", "provider": "11370100MB0000001A",
        "summary": f"Open dataset number {n} of Jinan", "format": "electronic_file",
        "share_type": "unconditional", "share_mode": "platform", "open_type": "open",
        "update_cycle": "monthly"})
    code = urllib.parse.quote(saved["code"], safe="")
    call(jinan, token, "POST", f"/api/v1/catalog/{code}/publish")
national, _ = client(nodes[100000])
deadline = time.time() + 600
while True:
    national.request("GET", "/api/3/action/package_search?rows=0")
    count = json.loads(national.getresponse().read())["result"]["count"]
    if count >= entries:
        break
    if time.time() > deadline:
        raise SystemExit(f"the national node holds {count} of {entries} open entries after 10 minutes")
    time.sleep(0.2)
