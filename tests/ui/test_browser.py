"""The dashboard end to end, as an operator uses it: headless Chromium (Debian's package, driven
by Playwright; never a downloaded browser) against a real gateway with a fake upstream. One
browser, one test: a wrong master key is refused; sign in; numbers move after traffic; a request
is found in the log by its id and its detail opened; a key is created (its secret shown once,
and it works), its limits changed, and revoked (then the gateway answers 401 for it); sign out.

Without chromium or Playwright the test skips and says why; with LOCKGATE_REQUIRE_SERVICES=1
(CI, which installs chromium) it fails instead."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from conftest import CLIENT_KEY, GatewayFactory
from gateway import GatewayServer
from ui.dashboard import MASTER

CHROMIUM = "/usr/bin/chromium"
MODELS = {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}],
                  "price": {"input_per_mtok_usd": 1000, "output_per_mtok_usd": 2000}}}
WAIT_MS = 10_000  # the page refreshes every second here; records reach storage in well under this


def _require_browser() -> Any:
    reason = None
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        reason = "Debian's chromium is not installed (apt-get install -y chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright package is not installed (pip install -e '.[test]')"
    if reason is not None:
        if os.environ.get("LOCKGATE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; LOCKGATE_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)
    return sync_playwright


def chat(gw: GatewayServer, key: str, request_id: str | None = None) -> int:
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)
    headers = {"x-request-id": request_id} if request_id else {}
    try:
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "Hi"}],
                                       extra_headers=headers)
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def eventually_status(gw: GatewayServer, key: str, status: int, within_s: float = 3.0) -> int:
    deadline = time.monotonic() + within_s
    got = chat(gw, key)
    while got != status and time.monotonic() < deadline:
        time.sleep(0.1)
        got = chat(gw, key)
    return got


def test_the_dashboard_in_a_browser(gateway: GatewayFactory, tmp_path: Path) -> None:
    sync_playwright = _require_browser()
    from playwright.sync_api import expect

    gw = gateway(models=MODELS, server={"master_key": MASTER}, keys=[{"name": "app", "key": CLIENT_KEY}])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # "Limits" asks for "rpm, tpm, budget"; "Revoke" asks to confirm.
        page.on("dialog", lambda d: d.accept("50, 5000, 2.5") if d.type == "prompt" else d.accept())
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{gw.url}/ui/?refresh_s=1")

        # A wrong master key is refused; the right one signs in.
        page.fill("#login-key", "not-the-master-key")
        page.click("#login-form button")
        expect(page.locator("#login-error")).to_contain_text("wrong master key")
        expect(page.locator("#app")).to_be_hidden()
        page.fill("#login-key", MASTER)
        page.click("#login-form button")
        expect(page.locator("#stat-requests")).to_have_text("0")
        # The experiments tab shows where the gateway has the experiments API (this one has none set up).
        page.click("#nav-experiments")
        expect(page.locator("#experiments")).to_contain_text("No experiments are configured.")
        page.click("nav a[data-view=overview]")

        # Numbers move after traffic.
        request_ids = [f"ui-e2e-{i}-{os.getpid()}" for i in range(3)]
        assert [chat(gw, CLIENT_KEY, rid) for rid in request_ids] == [200, 200, 200]
        expect(page.locator("#stat-requests")).to_have_text("3")
        expect(page.locator("#stat-cost")).to_have_text("$0.0750")
        expect(page.locator("#chart-live canvas")).to_have_count(1)

        # The request log: find a request by its id, open its detail.
        page.click("nav a[data-view=logs]")
        expect(page.locator("#log-rows tr")).to_have_count(3)
        page.fill("#find-id", request_ids[1])
        page.click("#find-form button")
        expect(page.locator("#detail-id")).to_have_text(request_ids[1])
        detail = page.locator("#detail dl")
        expect(detail).to_contain_text("gpt")
        expect(detail).to_contain_text("oai/gpt-4o-mini")
        expect(detail).to_contain_text("200")
        page.go_back()
        page.click(f"#log-rows a:has-text('{request_ids[0]}')")
        expect(page.locator("#detail-id")).to_have_text(request_ids[0])

        # Keys: create one (the secret is shown once and works), then revoke it.
        page.click("nav a[data-view=keys]")
        page.fill("#k-name", "e2e-key")
        page.fill("#k-rpm", "100")
        page.click("#key-form button[type=submit]")
        secret = page.locator("#key-secret-value")
        expect(secret).not_to_be_empty()
        key = secret.inner_text()
        assert key.startswith("lg-")
        assert eventually_status(gw, key, 200) == 200
        row = page.locator("#key-rows tr", has_text="e2e-key")
        expect(row).to_contain_text("active")
        row.locator("button", has_text="Limits").click()
        expect(row.locator("td.num").nth(0)).to_have_text("50")
        expect(row.locator("td.num").nth(1)).to_have_text("5000")
        expect(row.locator("td.num").nth(2)).to_have_text("2.5")
        row.locator("button", has_text="Revoke").click()
        expect(row).to_contain_text("revoked")
        assert eventually_status(gw, key, 401) == 401

        # Sign out: the login form again, also after a reload (the cookie is gone).
        page.click("#logout")
        expect(page.locator("#login")).to_be_visible()
        page.reload()
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()
        browser.close()
