"""`make demo` as a newcomer runs it, twice: the seed report's province on the dashboard, and
nothing doubled by the second run.

About 780,000 events through the real ingest, aggregator and API on the local Apache Kafka
and SecantusDB: 10 to 15 minutes on 2 cores, so this runs as `make demo-test` (CI runs it
after `make test`), not inside `make test`'s 15 minutes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from deploy.local.stack import REPO, free_port

DEMO_TIMEOUT_S = 1800
CHROMIUM = "/usr/bin/chromium"


class Run:
    """`python -m deploy.local.run` with DEMO=1, its output collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploy.local.run"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            assert self.process.poll() is None, f"make demo exited:\n{self.output[-5000:]}"
            time.sleep(0.5)
        raise AssertionError(f"no {pattern!r} after {timeout_s} s:\n{self.output[-5000:]}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(120)


@pytest.fixture()
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    ports = {
        name: str(free_port())
        for name in ("KAFKA", "KAFKA_CONTROLLER", "MONGODB", "INGEST", "API", "AGGREGATOR")
    }
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KAFKA_BOOTSTRAP", "MONGODB_URI", "EVENTS_TOPIC", "MONGODB_DB")
    }
    yield {
        **inherited,
        **{f"{name}_PORT": port for name, port in ports.items()},
        "DEMO": "1",
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_DIR": str(tmp_path / "logs"),
        "ADMIN_TOKEN": "test-admin-token-for-make-demo",
        "PYTHONUNBUFFERED": "1",
    }


def figures(api: str, headers: dict[str, str]) -> dict[str, Any]:
    """What the seed report shows, read back through the API."""

    def get(path: str, **params: str) -> Any:
        response = httpx.get(f"{api}{path}", params=params, headers=headers, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    payments = get("/v1/reports/payments", date="2024-04-22")
    online = get("/v1/reports/online-services", date="2024-04-21")
    usage = get("/v1/reports/software-usage", **{"from": "2024-03-21", "to": "2024-04-20"})
    eid = get("/v1/campaigns/de-an-06-eid-2024/progress", unit_id="binh-phuoc", at="2024-03-31")[
        "units"
    ][0]["metrics"][0]
    hotline = {
        metric: get("/v1/totals", unit_id="binh-phuoc", metric=metric, period=period)["value"]
        for metric, period in [
            ("hotline.received", "range:2024-03-21..2024-04-22"),
            ("hotline.forwarded", "range:2024-03-21..2024-04-22"),
        ]
    }
    certification = {
        status: get(
            "/v1/totals", unit_id="binh-phuoc", metric=f"certification.{status}", period="all"
        )["value"]
        for status in ("pending_signature", "pending_seal", "completed", "cancelled", "rejected")
    }
    four = get("/v1/campaigns/4-phu-2024/progress", unit_id="bu-dang", at="2024-04-22")
    return {
        "payments": payments["total"]["year"]["all"],
        "payments_day": payments["total"]["day"]["all"],
        "online_total": online["total"]["online_share"]["percent"],
        "usage_total": [
            usage["total"]["ecabinet_meetings_total"],
            usage["total"]["signed_documents"]["percent"],
            usage["total"]["official_email"]["percent"],
        ],
        "eid": [eid["value"], eid["target"], eid["percent"], eid["status"]],
        "hotline": hotline,
        "certification": certification,
        "four_statuses": sorted(
            {m["status"] for u in four["units"][1:] for m in u["metrics"] if m["status"]}
        ),
        "province_eid_all": get(
            "/v1/totals", unit_id="binh-phuoc", metric="eid.activated", period="all"
        )["value"],
    }


def check_dashboard(api: str, viewer: str) -> None:
    """The dashboard on the demo's day shows the payments table's province total, and on the
    last day of the quarter the e-ID campaign at 518,898 of 502,000."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_context(locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh").new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{api}/#c=4-phu-2024&d=2024-04-22")
        page.get_by_label("Mã truy cập").fill(viewer)
        page.get_by_role("button", name="Đăng nhập").click()
        page.wait_for_selector("#board:not([hidden])")
        grand = "#payments [data-unit='grand'] [data-cell='year.all.amount_vnd']"
        page.wait_for_function(
            "([sel, text]) => (document.querySelector(sel)?.textContent || '').includes(text)",
            arg=[grand, "33.224.853.808"],
        )
        assert (
            "14.362"
            in page.locator(
                "#payments [data-unit='grand'] [data-cell='year.all.count']"
            ).inner_text()
        )
        assert page.locator("#online tr.total").count() == 1
        assert page.locator("#cards [data-metric='sim.registered']").count() == 1
        page.screenshot(path=str(REPO / "tests" / "artifacts" / "demo-2024-04-22.png"))
        page.goto(f"{api}/#c=de-an-06-eid-2024&d=2024-03-31")
        card = "#cards [data-metric='eid.activated']"
        page.wait_for_function(
            "([sel]) => (document.querySelector(sel + ' .value')?.textContent || '').trim()"
            " === '518.898'",
            arg=[card],
        )
        assert page.locator(f"{card} .pct").inner_text() == "103,37%"
        assert page.locator(f"{card} .target").inner_text().strip() == "/ 502.000"
        browser.close()


def test_make_demo_shows_the_seed_report_and_a_second_run_adds_nothing(
    demo_env: dict[str, str],
) -> None:
    (REPO / "tests" / "artifacts").mkdir(exist_ok=True)
    api = f"http://127.0.0.1:{demo_env['API_PORT']}"
    headers = {"Authorization": f"Bearer {demo_env['ADMIN_TOKEN']}"}
    first = Run(demo_env)
    try:
        first.wait_for(r"Ctrl-C stops everything", 180)
        viewer = first.wait_for(r"Viewer token\s+(\S+)", 1).group(1)
        first.wait_for(r"the dashboard fills as they are counted: (\S+)", 120)
        # The first tables are on the dashboard long before the whole demo is counted.
        deadline = time.monotonic() + DEMO_TIMEOUT_S
        while time.monotonic() < deadline:
            payments = httpx.get(
                f"{api}/v1/reports/payments", params={"date": "2024-04-22"}, headers=headers
            ).json()
            if payments["total"]["year"]["all"]["count"] == 14_362:
                break
            time.sleep(1)
        tables_after = time.monotonic() - first.started
        first.wait_for(r"demo: the province on 2024-04-22: (\S+)", DEMO_TIMEOUT_S)
        done_after = time.monotonic() - first.started
        posted = first.wait_for(
            r"demo: ([\d,]+) events posted and counted in \d+ s: ([\d,]+) new", 1
        )
        assert posted.group(1) == posted.group(2)  # a fresh stack: every event is new
        seen = figures(api, headers)
        assert seen["payments"] == {"count": 14_362, "amount_vnd": 33_224_853_808}
        assert seen["eid"] == [518_898, 502_000, 103.37, "done"]
        assert seen["hotline"] == {"hotline.received": 360, "hotline.forwarded": 31}
        assert seen["certification"] == {
            "pending_signature": 955,
            "pending_seal": 794,
            "completed": 136_755,
            "cancelled": 847,
            "rejected": 927,
        }
        assert seen["usage_total"] == [4145, 88.8, 86.35]
        # "4 phủ" in progress: some communes ahead of the pace, some behind it.
        assert {"lagging", "on_track"} <= set(seen["four_statuses"])
        check_dashboard(api, viewer)
        print(
            f"make demo: the April 2024 tables counted {tables_after:.0f} s after the start, "
            f"everything {done_after:.0f} s after it"
        )
    finally:
        assert first.stop() == 0, first.output[-3000:]

    # Again, on the same data: the same ids, so every event is a duplicate.
    second = Run(demo_env)
    try:
        second.wait_for(r"demo: the province on 2024-04-22", DEMO_TIMEOUT_S)
        again = second.wait_for(
            r"demo: ([\d,]+) events posted and counted in \d+ s: 0 new, ([\d,]+)", 1
        )
        assert again.group(1) == again.group(2) == posted.group(1)
        assert figures(api, headers) == seen
    finally:
        assert second.stop() == 0, second.output[-3000:]
