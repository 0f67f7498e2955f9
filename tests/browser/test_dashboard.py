"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a
real `slackwater serve`, with every request that is not to loopback blocked: batches
appear and finish without a reload, a failed batch is found by its filter and retried,
a batch is cancelled, the cost page agrees with `slackwater report`, and one project's
key sees nothing of another's. With SLACKWATER_SCREENSHOTS=1 it saves each page to
docs/screenshots/."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import ROOT, Serve, run_cli, start_server

pytestmark = pytest.mark.browser
# Debian's binary itself (its /usr/bin/chromium is a shell launcher).
CHROMIUM = next(
    (p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium")) if p and Path(p).exists()),
    None,
)
CONFIG = """
max_batch_wait_seconds = 0
price_sample_seconds = 1

[[pools]]
name = "box"
kind = "local"
price_per_hour = 0.05

[[pools]]
name = "spot-a"
kind = "spot"
price_per_hour = 0.02
feed = "trace:{trace}"

[[models]]
name = "echo"
engine = "fake"
endpoints = ["/v1/chat/completions"]
max_batch_size = 2
price = {{ input = "1", output = "2" }}
options = {{ latency_ms = 250 }}

[[models]]
name = "flaky"
engine = "fake"
endpoints = ["/v1/chat/completions"]
price = {{ input = "1", output = "2" }}
options = {{ failure_rate = 0.5, failure_status = 400 }}
"""


def lines(model: str, n: int) -> bytes:
    return b"".join(
        json.dumps(
            {
                "custom_id": f"{model}-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": model, "messages": [{"role": "user", "content": f"q{i}"}]},
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


class Api:
    def __init__(self, server: Serve, key: str) -> None:
        self.http = httpx.Client(
            base_url=server.url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def batch(self, model: str, n: int) -> dict[str, Any]:
        file = self.http.post(
            "/files", files={"file": ("in.jsonl", lines(model, n))}, data={"purpose": "batch"}
        ).json()
        made = self.http.post(
            "/batches",
            json={
                "input_file_id": file["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        assert made.status_code == 200, made.text
        return dict(made.json())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serve, list[str], Path]]:
    if CHROMIUM is None:
        pytest.skip("no Chromium (Debian: apt-get install chromium)")
    root = tmp_path_factory.mktemp("dashboard")
    data = root / "data"
    config = root / "slackwater.toml"
    trace = root / "spot.json"  # spot comes and goes every few seconds
    trace.write_text(json.dumps({"metadata": {"gap_seconds": 3}, "data": [0, 0, 1, 0, 1, 1]}))
    config.write_text(CONFIG.format(trace=trace))
    keys = []
    for project in ("team-a", "team-b"):
        made = run_cli("keys", "create", "--project", project, "--data-dir", str(data))
        assert made.returncode == 0, made.stderr
        keys.append(made.stdout.strip())
    server = start_server(data, "--config", str(config))
    yield server, keys, config
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    outside: list[str] = []

    def only_loopback(route: Any) -> None:
        if route.request.url.startswith(("http://127.0.0.1", "http://localhost")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    opened = context.new_page()
    yield opened
    context.close()
    assert outside == [], f"the page asked for something off this machine: {outside}"


def sign_in(page: Any, server: Serve, key: str) -> None:
    page.goto(server.url + "/ui/batches")
    assert page.url.endswith("/ui/login")  # no key yet: the sign-in page
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/batches")


def shot(page: Any, name: str) -> None:
    if os.environ.get("SLACKWATER_SCREENSHOTS"):
        target = ROOT / "docs" / "screenshots"
        target.mkdir(exist_ok=True)
        page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def test_a_batch_appears_and_finishes_without_a_reload(page: Any, site: Any) -> None:
    server, (key_a, _), _ = site
    sign_in(page, server, key_a)
    assert page.text_content("#project") == "team-a"
    batch = Api(server, key_a).batch("echo", 12)
    row = page.locator(f"tr[data-batch='{batch['id']}']")
    row.wait_for(timeout=15_000)  # it came in by itself: no reload
    page.wait_for_selector(
        f"tr[data-batch='{batch['id']}'][data-status='completed']", timeout=60_000
    )
    assert row.locator("progress").get_attribute("value") == "100"
    shot(page, "batches")
    # Its page: progress, requests with their cost, the output to download.
    row.locator("a").click()
    page.wait_for_selector("#progress[data-status='completed']")
    assert page.locator("#requests tbody tr[data-status='succeeded']").count() == 12
    assert page.locator("text=Download output").count() == 1
    shot(page, "batch")


def test_a_failed_batch_is_found_by_its_filter_and_retried(page: Any, site: Any) -> None:
    server, (key_a, _), _ = site
    api = Api(server, key_a)
    batch = api.batch("flaky", 10)
    for _ in range(120):
        state = api.http.get(f"/batches/{batch['id']}").json()
        if state["status"] == "completed":
            break
        page.wait_for_timeout(250)
    assert state["request_counts"]["failed"] > 0, state
    sign_in(page, server, key_a)
    page.check("input[name=failed]")
    page.click("form.filters button")
    page.wait_for_url("**failed=true")
    rows = page.locator("#batch-rows tr[data-batch]")
    rows.first.wait_for()
    shown = {rows.nth(i).get_attribute("data-batch") for i in range(rows.count())}
    assert batch["id"] in shown
    assert all(int(rows.nth(i).locator("td").nth(4).inner_text()) > 0 for i in range(rows.count()))
    page.click(f"a[href='/ui/batches/{batch['id']}']")
    page.check("#requests ~ form input[name=failed], form.filters input[name=failed]")
    page.click("form.filters button")
    page.wait_for_url("**failed=true")
    failed = page.locator("#requests tbody tr[data-status='failed']")
    failed.first.wait_for()
    assert failed.count() == state["request_counts"]["failed"]
    assert all(failed.nth(i).locator("td.error").inner_text() for i in range(failed.count()))
    shot(page, "failed")
    page.click("#retry")
    page.wait_for_selector(f"a[href='/ui/batches/{batch['id']}']")  # "a retry of ..."
    assert page.url.rsplit("/", 1)[1] != batch["id"]


def test_cancel_from_the_batch_page(page: Any, site: Any) -> None:
    server, (key_a, _), _ = site
    batch = Api(server, key_a).batch("echo", 400)  # a minute of work
    sign_in(page, server, key_a)
    page.goto(f"{server.url}/ui/batches/{batch['id']}")
    page.click("#cancel")
    page.wait_for_selector(
        "#progress[data-status='cancelled'], #progress[data-status='cancelling']"
    )


def test_the_cost_page_agrees_with_the_report(page: Any, site: Any) -> None:
    server, (key_a, _), config = site
    api = Api(server, key_a)
    for _ in range(240):  # what the other tests started has ended: the ledger holds still
        listed = api.http.get("/batches", params={"limit": 100}).json()["data"]
        if all(b["status"] in {"completed", "failed", "expired", "cancelled"} for b in listed):
            break
        page.wait_for_timeout(250)
    sign_in(page, server, key_a)
    page.goto(server.url + "/ui/cost")
    for chart in ("by-day", "by-model"):
        page.wait_for_function(f"document.querySelector('canvas#{chart}').width > 0")
    assert page.locator("h2", has_text="By pool").count() == 1
    shot(page, "cost")
    report = run_cli(
        "report", "--json", "--by", "model", "--project", "team-a",
        "--config", str(config), "--data-dir", str(server.log.parent / "data"),
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    total = json.loads(report.stdout)["total"]
    assert page.text_content("#saving") == f"${total['saving_usd']}"
    assert page.text_content("#cost") == f"${total['cost_usd']}"


def test_a_projects_key_sees_none_of_anothers_batches(page: Any, site: Any) -> None:
    server, (key_a, key_b), _ = site
    theirs = Api(server, key_a).batch("echo", 2)
    sign_in(page, server, key_b)
    assert page.text_content("#project") == "team-b"
    assert page.locator(f"tr[data-batch='{theirs['id']}']").count() == 0
    assert "No batches" in page.text_content("#batch-rows")
    missing = page.goto(f"{server.url}/ui/batches/{theirs['id']}")
    assert missing is not None and missing.status == 404


def test_the_api_page_works_offline(page: Any, site: Any) -> None:
    server, (key_a, _), _ = site
    page.set_extra_http_headers({"Authorization": f"Bearer {key_a}"})
    page.goto(server.url + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    shot(page, "api")


def test_every_page_loads_with_nothing_from_off_this_machine(page: Any, site: Any) -> None:
    server, (key_a, _), _ = site
    sign_in(page, server, key_a)
    for name in ("capacity", "router", "sessions", "predictions"):
        answer = page.goto(f"{server.url}/ui/{name}")
        assert answer is not None and answer.status == 200
        assert page.locator("nav a.here").inner_text().lower().startswith(name[:5])
        if name == "capacity":  # the sampled prices, drawn by the vendored Chart.js
            page.wait_for_function("document.querySelector('canvas#pool-history').width > 0")
        shot(page, name)
