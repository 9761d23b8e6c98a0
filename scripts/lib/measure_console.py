"""Measures the web console in Debian's chromium (Playwright) at one node:
the bytes of its first load, and the time to first render of its screens.

Each screen opens in a fresh browser context (nothing cached), signed in with
the node's token; "first render" is when the screen's first row (or tree) is
in the document, timed in the page from the navigation's start. Each is
repeated and the median printed, with its ratio to the baseline (the
federation screen: one small API call) measured in the same run.
Usage: measure_console.py URL TOKEN [runs]"""
import json, statistics, sys
from urllib.parse import quote

from playwright.sync_api import sync_playwright

url, token = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 7

# Records, in the page, when each watched selector first matches.
WATCH = """
window.__seen = {};
const watched = %s;
new MutationObserver(() => {
  for (const s of watched) if (!(s in window.__seen) && document.querySelector(s)) window.__seen[s] = performance.now();
}).observe(document, { subtree: true, childList: true });
sessionStorage.setItem("cascade.token", %s);
"""

SCREENS = [
    ("baseline: federation tree", "#/federation", ".tree"),
    ("catalog, first page of all", "#/catalog", "#catalog-list tbody tr"),
    ("catalog, text search", "#/catalog?q=" + quote("数据集 9999"), "#catalog-list tbody tr"),
    ("catalog, format + cycle filter", "#/catalog?format=electronic_file&update_cycle=monthly",
     "#catalog-list tbody tr"),
]

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    selectors = sorted({s for _, _, s in SCREENS})

    context = browser.new_context()
    page = context.new_page()
    sizes = {}

    def record(response):
        sizes[response.url.replace(url, "")] = len(response.body())

    page.on("response", record)
    page.goto(url + "/")
    page.wait_for_selector("#signin")
    page.remove_listener("response", record)
    statuses = []
    page.on("response", lambda r: statuses.append(r.status))
    page.reload()
    page.wait_for_selector("#signin")
    files = {k: v for k, v in sizes.items() if not k.startswith("/api/")}
    print(f"first load: {sum(files.values())} bytes in {len(files)} files {files}; "
          f"a reload revalidates: statuses {sorted(statuses)}")
    context.close()

    baseline = None
    for name, hash_, selector in SCREENS:
        times = []
        for _ in range(runs):
            context = browser.new_context()
            context.add_init_script(WATCH % (json.dumps(selectors), json.dumps(token)))
            page = context.new_page()
            page.goto(f"{url}/{hash_}")
            page.wait_for_selector(selector, timeout=60_000)
            times.append(page.evaluate(f"window.__seen[{json.dumps(selector)}]"))
            rows = page.locator("#catalog-list tbody tr").count()
            context.close()
        median = statistics.median(times)
        baseline = baseline or median
        print(f"{name:34} median {median:7.1f} ms  ({median / baseline:5.2f}x baseline)  "
              f"min {min(times):7.1f}  max {max(times):7.1f}  rows shown {rows}")
    browser.close()
