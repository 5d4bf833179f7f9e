"""Takes docs/dashboard.png: the dashboard's overview over a storage with traffic in it.

    .venv/bin/python bench/dashboard.py fill sqlite:////tmp/lockgate-shot.db --records 30000
    .venv/bin/python scripts/dashboard_screenshot.py sqlite:////tmp/lockgate-shot.db

Starts ``lockgate serve`` on that storage with a throwaway master key, signs in with Debian's
chromium (Playwright, never a downloaded browser) and saves the page.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("storage")
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    args = parser.parse_args()
    master, port = secrets.token_urlsafe(24), free_port()
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "lockgate.yaml"
        config.write_text(f"storage: {args.storage}\nserver:\n  master_key: {master}\n"
                          "providers: {}\nmodels: {}\n")
        lockgate = Path(sys.executable).parent / "lockgate"
        server = subprocess.Popen([str(lockgate), "serve", "--config", str(config), "--port", str(port)],
                                  env={**os.environ, "LOCKGATE_CONFIG": str(config)}, cwd=scratch)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{url}/healthz", timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1400, "height": 1050})
                page.goto(f"{url}/ui/")
                page.fill("#login-key", master)
                page.click("#login-form button")
                page.wait_for_selector("#chart-cost canvas")
                time.sleep(1.0)  # the charts' first draw
                page.screenshot(path=args.out, full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
