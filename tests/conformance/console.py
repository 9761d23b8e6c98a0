"""Drives the web console of a running `cascade up` federation in Debian's
chromium (Playwright), as its people would:

- a cataloger of Jinan signs in, is shown the field's error for an invalid
  entry, corrects it, publishes it and registers a service for it;
- an operator of Shandong signs in and finds the entry in the province's catalog;
- a consumer of Qingdao applies for the service; an approver of Jinan approves
  it in the inbox; the consumer sees the grant and calls the service through
  Qingdao's gateway (the upstream is a server this script runs);
- Qingdao's node process is stopped, and the Shandong operator's federation tree
  shows the link to it down;
- the English switch works, and the console's first load is measured.

Screenshots of the main screens go to --shots. Every wait polls with a
deadline. Exit status 0 when everything holds.
"""

import argparse
import http.server
import json
import os
import re
import signal
import sys
import threading
import time

from playwright.sync_api import expect, sync_playwright

# How long a change may take to show (federation propagation, a page reload).
DEADLINE_MS = 60_000


class Upstream(http.server.BaseHTTPRequestHandler):
    """The provider's own system behind the gateway: answers every GET."""

    def do_GET(self):
        body = json.dumps({"company": self.path.rsplit("/", 1)[-1], "status": "存续"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def upstream():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


class Console:
    """One person's browser tab at one node's console."""

    def __init__(self, browser, url, shots):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.set_default_timeout(DEADLINE_MS)
        self.url = url
        self.shots = shots
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def sign_in(self, username, password):
        self.page.goto(self.url + "/")
        self.page.fill("#signin input[name=username]", username)
        self.page.fill("#signin input[name=password]", password)
        self.page.click("#signin button[type=submit]")
        expect(self.page.locator("#who")).to_contain_text(username)

    def go(self, hash_):
        self.page.goto(f"{self.url}/{hash_}")

    def shot(self, name):
        self.page.screenshot(path=os.path.join(self.shots, f"{name}.png"), full_page=True)

    def until(self, what, check, reload_hash):
        """Opens `reload_hash` and reloads it until `check()` holds, or fails naming `what`."""
        end = time.monotonic() + DEADLINE_MS / 1000
        self.go(reload_hash)
        while True:
            # The screen settles: drawn, or an error shown (the thing may not
            # have arrived yet); a catalog draws its heading before its rows.
            self.page.wait_for_load_state("networkidle")
            if check():
                return
            if time.monotonic() > end:
                raise AssertionError(f"not in time: {what}")
            self.page.wait_for_timeout(500)
            # The same hash again is no navigation: reload the page itself.
            self.page.reload()


def first_load(browser, url):
    """Bytes of the console's first load (every response), and the files."""
    page = browser.new_page()
    sizes = {}

    def record(response):
        body = response.body()
        sizes[response.url.replace(url, "")] = len(body)

    page.on("response", record)
    page.goto(url + "/")
    page.wait_for_selector("#signin")
    page.close()
    return sizes


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", required=True, help="JSON: node URLs, accounts, Qingdao's pid")
    parser.add_argument("--shots", required=True, help="folder for screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    people = json.loads(args.people)
    os.makedirs(args.shots, exist_ok=True)
    jinan, shandong, qingdao = people["370100"], people["370000"], people["370200"]
    service_upstream = upstream()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])

        sizes = first_load(browser, jinan["url"])
        print(json.dumps({"first_load_bytes": sum(sizes.values()), "files": sizes}))

        # A cataloger of Jinan: an invalid entry shows the field's error.
        li = Console(browser, jinan["url"], args.shots)
        li.sign_in("li", jinan["password"])
        li.shot("01-federation-city")
        li.go("#/edit")
        form = li.page.locator("#entry-form")
        form.locator("input[name=name]").fill("营业执照信息")
        form.locator("input[name=classification]").fill("7")
        form.locator("textarea[name=summary]").fill("Business licences issued in Jinan")
        form.locator("select[name=share_type]").select_option("conditional")
        form.locator("input[name=item_name]").fill("统一社会信用代码")
        form.locator("input[name=item_length]").fill("18")
        form.locator("button[type=submit]").click()
        error = li.page.locator('[data-field="classification"] .field-error')
        expect(error).to_contain_text("classification")
        expect(form.locator("input[name=classification]")).to_have_class("invalid")
        li.shot("02-entry-field-error")
        # The next error names the share condition a conditional share needs.
        form.locator("input[name=classification]").fill("3")
        form.locator("button[type=submit]").click()
        expect(li.page.locator('[data-field="share_condition"] .field-error')).to_be_visible()
        form.locator("input[name=share_condition]").fill("仅用于市场监管")
        form.locator("button[type=submit]").click()
        li.page.wait_for_url("**/#/entry?*")
        code = li.page.locator('dd[data-key="code"]').inner_text()
        li.page.click("#publish")
        expect(li.page.locator('dd[data-key="status"]')).to_have_text("published")
        li.go("#/services")
        service_form = li.page.locator("#service-form")
        service_form.locator("input[name=name]").fill("营业执照查询")
        service_form.locator("input[name=entry_code]").fill(code)
        service_form.locator("input[name=path]").fill("/licences/{code}")
        service_form.locator("input[name=upstream]").fill(service_upstream)
        service_form.locator("button[type=submit]").click()
        expect(li.page.locator("main table")).to_contain_text("营业执照查询")
        service = li.page.locator("main table tbody tr").filter(has_text="营业执照查询").locator("td").first.inner_text()
        # Reclassified to sensitivity level 3 at its own node.
        row = li.page.locator(f'[data-classify="{service}"]')
        row.locator("select").select_option("3")
        row.locator("button").click()
        expect(li.page.locator("#flash")).to_have_text("已保存")
        expect(li.page.locator(f'[data-classify="{service}"] select')).to_have_value("3")
        li.shot("03-services")

        # The province's operator finds it in the province's console.
        ops = Console(browser, shandong["url"], args.shots)
        ops.sign_in("ops", shandong["password"])
        ops.until("the entry reaches the province",
                  lambda: ops.page.locator(f'#catalog-list tr[data-code="{code}"]').count() == 1,
                  "#/catalog?origin=370100")
        ops.shot("04-catalog-province")

        # A consumer of Qingdao applies for the service from the entry's page.
        zhao = Console(browser, qingdao["url"], args.shots)
        zhao.sign_in("zhao", qingdao["password"])
        entry_page = f"#/entry?origin=370100&code={code.replace('/', '%2F')}"
        zhao.until("the service reaches Qingdao",
                   lambda: zhao.page.locator(f'#apply option[value="{service}"]').count() == 1, entry_page)
        zhao.shot("05-entry-city")
        apply = zhao.page.locator("#apply")
        apply.locator("select[name=resource]").select_option(service)
        apply.locator("input[name=purpose]").fill("市场主体监管")
        apply.locator("button[type=submit]").click()
        zhao.page.wait_for_url("**/#/sharing?tab=outbox")
        expect(zhao.page.locator("main table")).to_contain_text(service)

        # Jinan's approver approves it in the inbox.
        wang = Console(browser, jinan["url"], args.shots)
        wang.sign_in("wang", jinan["password"])
        wang.until("the application reaches Jinan's inbox",
                   lambda: wang.page.locator('button[data-action="approve"]').count() == 1, "#/sharing?tab=inbox")
        # Ten working days to decide, counted by the node's calendar (nine if
        # China's midnight fell between the application and this look).
        expect(wang.page.locator("[data-days-left]")).to_have_attribute("data-days-left", re.compile("^(10|9)$"))
        wang.shot("06-inbox")
        wang.page.click('button[data-action="approve"]')
        expect(wang.page.locator('[data-state="granted"]')).to_be_visible()

        # The consumer sees the grant and calls the service through Qingdao.
        zhao.until("the grant reaches Qingdao",
                   lambda: zhao.page.locator('[data-valid="true"]').count() == 1, "#/sharing?tab=held")
        call = zhao.page.locator("#call")
        call.locator("input[name=service]").fill(service)
        call.locator("input[name=path]").fill("/licences/91370100MA3C000001")
        call.locator("button[type=submit]").click()
        expect(zhao.page.locator("#call-result")).to_contain_text("200")
        expect(zhao.page.locator("#call-result")).to_contain_text("91370100MA3C000001")
        zhao.shot("07-grant-and-call")

        # The English switch.
        zhao.page.click("#lang")
        expect(zhao.page.locator("#nav")).to_contain_text("Sharing portal")
        zhao.page.click("#lang")
        expect(zhao.page.locator("#nav")).to_contain_text("共享门户")

        # Monitoring and audit, as the operator sees them.
        ops.go("#/monitoring")
        # Seven charts sampled from /metrics, and one per hop role from the usage
        # records: Shandong relayed Qingdao's call to Jinan.
        expect(ops.page.locator('[data-chart*="relay"]')).to_have_count(1)
        expect(ops.page.locator("[data-chart]")).to_have_count(8)
        ops.shot("08-monitoring")
        ops.go("#/audit")
        expect(ops.page.locator("#audit-verdict")).to_have_class("ok")
        ops.shot("09-audit")
        ops.go("#/base")
        expect(ops.page.locator("main")).to_contain_text("ops")
        ops.shot("10-base")

        # Qingdao's node stops; the province's tree shows the link down.
        ops.until("Qingdao's link is up", lambda: ops.page.locator(
            '[data-node="370200"] [data-link="connected"]').count() == 1, "#/federation")
        os.kill(qingdao["pid"], signal.SIGKILL)
        ops.until("Qingdao's link is down", lambda: ops.page.locator(
            '[data-node="370200"].down').count() == 1, "#/federation")
        ops.shot("11-federation-link-down")

        errors = [e for c in (li, ops, zhao, wang) for e in c.errors]
        if errors:
            print("script errors in the console:", errors, file=sys.stderr)
            sys.exit(1)
        browser.close()


if __name__ == "__main__":
    main()
