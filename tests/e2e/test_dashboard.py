"""The dashboard at `/`, in headless Chromium against the real running stack.

Debian's `chromium` (installed by `make test`) is driven by Playwright's own driver from PyPI;
no browser is downloaded. Screenshots go to tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from deploy.demo.seed_events import hotline_events
from deploy.local.stack import REPO
from tests.conftest import BackgroundPoster, Pipeline, at, make_event

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
CAMPAIGN = "dashboard-test-2024"
DAY = "2024-04-22"
# Province, a district that is done, one on track-ish, one lagging: every status is shown.
TARGETS = [
    ("binh-phuoc", "eid.activated", 4000),
    ("binh-phuoc", "cccd.issued", 400),
    ("bu-dang", "eid.activated", 1000),
    ("bu-dop", "eid.activated", 100),
    ("dong-xoai", "eid.activated", 3000),
    ("bu-dang-minh-hung", "eid.activated", 900),
]
EID_EVENTS = {"bu-dang-minh-hung": 1150, "bu-dop-tan-tien": 120, "dong-xoai": 80}


def vi_int(n: int) -> str:
    return f"{n:,}".replace(",", ".")


def vi_pct(p: float) -> str:
    return f"{p:.2f}".replace(".", ",") + "%"


def put_campaign(
    line: Pipeline,
    campaign: str,
    name: str,
    days: tuple[str, str],
    targets: list[tuple[str, str, float]],
) -> None:
    admin = line.headers()
    body = {"name": name, "starts": days[0], "ends": days[1]}
    response = httpx.put(line.url("api", f"/v1/campaigns/{campaign}"), json=body, headers=admin)
    assert response.status_code in (200, 201), response.text
    response = httpx.put(
        line.url("api", f"/v1/campaigns/{campaign}/targets"),
        json=[{"unit_id": u, "metric": m, "target": t} for u, m, t in targets],
        headers=admin,
    )
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def stack(own_pipeline: Pipeline) -> Pipeline:
    """A fresh pipeline with a campaign, targets and April 2024 events of several kinds."""
    line = own_pipeline
    put_campaign(line, CAMPAIGN, "Kiểm thử 4 phủ", ("2024-04-04", "2024-07-03"), TARGETS)
    events: list[dict[str, Any]] = []
    for unit_id, count in EID_EVENTS.items():
        events += [
            make_event("eid.activated", unit_id, at(f"2024-04-{10 + i % 13:02d}", 9 + i % 10))
            for i in range(count)
        ]
    events += [make_event("cccd.issued", "bu-dang-minh-hung", at(DAY)) for _ in range(37)]
    payments = [("bu-dang-minh-hung", "nvtc", 45_475_270), ("dong-xoai", "fee", 34_392_000)]
    events += [
        make_event(
            "payment.succeeded", unit, at(DAY, 8), amount_vnd=amount, attributes={"kind": kind}
        )
        for unit, kind, amount in payments
    ]
    events.append(
        make_event(
            "payment.succeeded",
            "bu-dop-tan-tien",
            at("2024-04-03"),
            amount_vnd=1_000,
            attributes={"kind": "nvtc"},
        )
    )
    events += [
        make_event(
            "filing.processed",
            "so-y-te",
            at(DAY),
            attributes={"channel": channel, "on_time": True},
        )
        for channel in ("online", "online", "offline")
    ]
    BackgroundPoster(line, events).join()
    line.wait_reflected()
    return line


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def viewer(stack: Pipeline) -> str:
    return stack.create_token("viewer")[1]


def open_dashboard(browser: Browser, line: Pipeline, token: str, **context: Any) -> Page:
    # A Vietnamese browser, as the committee's: the date field then reads dd/mm/yyyy.
    page = browser.new_context(locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", **context).new_page()
    page.set_default_timeout(15_000)
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(line.url("api", "/"))
    page.get_by_label("Mã truy cập").fill(token)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_selector("#board:not([hidden])")
    page.locator("#date").fill(DAY)
    page.locator("#date").dispatch_event("change")
    page.select_option("#campaign", CAMPAIGN)
    page.wait_for_function("() => document.querySelector('#metric').options.length === 2")
    page.select_option("#metric", "eid.activated")  # sorts the table, draws the chart, ranks
    # Settled: the chosen campaign and day are shown and no re-read is under way.
    page.wait_for_function(
        "() => document.body.dataset.busy === '0'"
        " && document.querySelector('#campaign-span').textContent.includes('Kiểm thử')"
        " && document.querySelector('#pay-title').textContent.includes('22/4/2024')"
        " && document.querySelector('#chart-title').textContent.includes('định danh')"
    )
    assert not [u for u in failed if not u.startswith(line.url("api", ""))]
    return page


def wait_for_text(page: Page, selector: str, text: str, timeout_ms: int = 15_000) -> None:
    """Until the element's text is `text` (or, for "", until it exists)."""
    page.wait_for_function(
        "([sel, text]) => { const el = document.querySelector(sel);"
        " return el !== null && (text === '' || el.textContent.trim() === text); }",
        arg=[selector, text],
        timeout=timeout_ms,
    )


def card_value(page: Page, metric: str) -> str:
    return page.locator(f"#cards [data-metric='{metric}'] .value").inner_text().strip()


def test_dashboard_shows_the_totals_and_updates_live(
    browser: Browser, stack: Pipeline, viewer: str
) -> None:
    page = open_dashboard(browser, stack, viewer, viewport={"width": 1920, "height": 1080})
    # The login page took the token; it is in no URL.
    assert viewer not in page.url
    assert page.evaluate("sessionStorage.getItem('campaign-tracker.token')") == viewer

    # The province's figures are /v1/totals' (every event lies inside the campaign, in April).
    eid = stack.total("binh-phuoc", "eid.activated", "month:2024-04", viewer)["value"]
    assert eid == sum(EID_EVENTS.values())
    wait_for_text(page, "#cards [data-metric='eid.activated'] .value", vi_int(eid))
    cccd = stack.total("binh-phuoc", "cccd.issued", "month:2024-04", viewer)["value"]
    assert card_value(page, "cccd.issued") == vi_int(cccd)
    progress = httpx.get(
        stack.url("api", f"/v1/campaigns/{CAMPAIGN}/progress"),
        params={"unit_id": "binh-phuoc", "at": DAY},
        headers=stack.headers(viewer),
    ).json()
    province = {m["metric"]: m for m in progress["units"][0]["metrics"]}
    card = page.locator("#cards [data-metric='eid.activated']")
    assert card.locator(".pct").inner_text() == vi_pct(province["eid.activated"]["percent"])
    assert card.locator(".target").inner_text().strip() == "/ 4.000"
    status = {"done": "Hoàn thành", "on_track": "Đúng tiến độ", "lagging": "Chậm tiến độ"}
    assert card.locator(".badge").inner_text() == status[province["eid.activated"]["status"]]
    assert card.locator("[role=progressbar] .marker").count() == 1  # expected-by-today marker

    # Districts and departments sorted by progress; the lagging one is marked.
    rows = page.locator("#children tbody tr")
    first_three = [rows.nth(i).get_attribute("data-unit") for i in range(3)]
    assert first_three == ["bu-dop", "bu-dang", "dong-xoai"]  # 120%, 115%, 2.67%
    assert "Chậm" in page.locator("#children tr[data-unit='dong-xoai'] th").inner_text()
    assert "Chậm" not in page.locator("#children tr[data-unit='bu-dop'] th").inner_text()

    # The daily chart's bar for the day is that day's total.
    day_total = stack.total("binh-phuoc", "eid.activated", f"day:{DAY}", viewer)["value"]
    bar = page.locator(f"#chart rect[data-date='{DAY}']")
    assert bar.get_attribute("data-value") == str(day_total)
    assert page.locator("#chart line.pace").count() == 1
    # The chart's endpoint: its days add up to the month's total; a reversed range is refused.
    series = httpx.get(
        stack.url("api", "/v1/series"),
        params={"unit_id": "bu-dang", "metric": "eid.activated", "from": "2024-04-01", "to": DAY},
        headers=stack.headers(viewer),
    )
    assert series.status_code == 200, series.text
    days = series.json()["days"]
    assert len(days) == 22 and days[0]["date"] == "2024-04-01"
    month = stack.total("bu-dang", "eid.activated", "month:2024-04", viewer)["value"]
    assert sum(d["value"] for d in days) == month
    reversed_range = {
        "unit_id": "bu-dang",
        "metric": "eid.activated",
        "from": DAY,
        "to": "2024-04-01",
    }
    assert (
        httpx.get(
            stack.url("api", "/v1/series"), params=reversed_range, headers=stack.headers(viewer)
        ).status_code
        == 422
    )

    # The report tables: day / month / year, as the seed writes them.
    pay = "#payments [data-unit='{}'] [data-cell='{}']"
    for unit, cell, metric, period in [
        ("bu-dang", "day.nvtc.amount_vnd", "payment.nvtc.amount_vnd", f"day:{DAY}"),
        ("dong-xoai", "month.fee.amount_vnd", "payment.fee.amount_vnd", "month:2024-04"),
        ("bu-dop", "year.nvtc.count", "payment.nvtc.count", "year:2024"),
        ("bu-dop", "day.nvtc.count", "payment.nvtc.count", f"day:{DAY}"),
    ]:
        value = stack.total(unit, metric, period, viewer)["value"]
        shown = page.locator(pay.format(unit, cell)).inner_text()
        assert shown == (vi_int(value) if value else "-"), (unit, cell)
    assert page.locator(pay.format("bu-dang", "day.nvtc.amount_vnd")).inner_text() == "45.475.270"
    online = page.locator("#online [data-unit='so-y-te']")
    assert online.locator("[data-cell='processed_online.percent']").inner_text() == "66,67%"
    assert online.locator("[data-cell='processed_online.verdict']").inner_text() == "Đạt"
    top = page.locator("#rankings li").first
    assert top.get_attribute("data-unit") == "bu-dang"
    assert top.locator(".value").inner_text() == vi_int(EID_EVENTS["bu-dang-minh-hung"])
    page.screenshot(path=str(ARTIFACTS / "dashboard-1920-top.png"))
    page.screenshot(path=str(ARTIFACTS / "dashboard-1920.png"), full_page=True)

    # Live: a new event shows without reload within 2 s of its 202.
    page.evaluate("window.__marker = 'not reloaded'")
    event = make_event("eid.activated", "bu-dang-minh-hung", at(DAY, 15))
    response = stack.post(event)
    posted = time.monotonic()
    assert response.status_code == 202
    wait_for_text(page, "#cards [data-metric='eid.activated'] .value", vi_int(eid + 1), 5_000)
    assert time.monotonic() - posted < 2.0
    assert page.evaluate("window.__marker") == "not reloaded"
    page.wait_for_selector(f"#chart rect[data-date='{DAY}'][data-value='{day_total + 1}']")
    assert page.locator("#as-of").get_attribute("datetime")
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d \d{1,2}/\d{1,2}/\d{4}", page.locator("#as-of").inner_text()
    )
    assert page.locator("#conn").get_attribute("data-state") == "live"
    page.context.close()


def test_drill_down_language_phone_and_accessibility(
    browser: Browser, stack: Pipeline, viewer: str
) -> None:
    # A wrong token is refused on the login page, which stays.
    refused = browser.new_context(locale="vi-VN").new_page()
    refused.goto(stack.url("api", "/"))
    refused.get_by_label("Mã truy cập").fill("not-a-token")
    refused.keyboard.press("Enter")
    wait_for_text(refused, "#login-error", "Mã truy cập không hợp lệ hoặc đã bị thu hồi.")
    assert refused.locator("#board").is_hidden()
    refused.context.close()

    page = open_dashboard(browser, stack, viewer, viewport={"width": 360, "height": 780})
    wait_for_text(page, "#cards [data-metric='eid.activated'] .value", "")
    # Nothing wider than the phone: tables scroll inside their own boxes.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.screenshot(path=str(ARTIFACTS / "dashboard-360-top.png"))
    page.screenshot(path=str(ARTIFACTS / "dashboard-360.png"), full_page=True)

    # Every control has a label; text and badges keep WCAG AA contrast.
    unlabeled = page.evaluate(
        "[...document.querySelectorAll('input, select, button')]"
        ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')"
        " && !e.textContent.trim()).map(e => e.id)"
    )
    assert unlabeled == []
    worst = page.evaluate(CONTRAST_JS, "#cards .badge, #cards h3, #children td, .details, th")
    assert worst >= 4.5, worst

    # Drill down with the keyboard: focus the district's link, press Enter.
    page.locator("#children a[data-unit='bu-dang']").focus()
    page.keyboard.press("Enter")
    wait_for_text(page, "#crumbs [aria-current='page']", "Huyện Bù Đăng")
    district = stack.total("bu-dang", "eid.activated", "month:2024-04", viewer)["value"]
    wait_for_text(page, "#cards [data-metric='eid.activated'] .value", vi_int(district))
    assert page.locator("#children tbody tr").first.get_attribute("data-unit") == (
        "bu-dang-minh-hung"
    )
    assert "#" in page.url and "u=bu-dang" in page.url and viewer not in page.url
    page.screenshot(path=str(ARTIFACTS / "dashboard-360-bu-dang.png"), full_page=True)

    # English: labels switch, numbers are written 1,150 and 127.78%.
    page.get_by_role("button", name="Switch to English").click()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#title").inner_text() == "Digital transformation dashboard"
    wait_for_text(page, "#cards [data-metric='eid.activated'] .value", f"{district:,}")
    progress = httpx.get(
        stack.url("api", f"/v1/campaigns/{CAMPAIGN}/progress"),
        params={"unit_id": "bu-dang", "at": DAY},
        headers=stack.headers(viewer),
    ).json()
    percent = progress["units"][1]["metrics"][0]["percent"]  # Minh Hưng's e-ID, of 900
    commune = page.locator("#children tr[data-unit='bu-dang-minh-hung'] td[data-metric]").first
    assert f"{percent:.2f}%" in commune.inner_text()
    assert page.locator("#conn strong").inner_text() == "Live"
    page.go_back()  # back up to the province
    wait_for_text(page, "#crumbs [aria-current='page']", "Tỉnh Bình Phước")
    page.get_by_role("button", name="Chuyển sang tiếng Việt").click()
    assert page.locator("#title").inner_text() == "Bảng điều hành chuyển đổi số"
    page.context.close()


def test_an_indicator_defined_at_run_time_is_chosen_with_its_names(
    browser: Browser, stack: Pipeline, viewer: str
) -> None:
    """The dashboard follows the registry: an indicator the admin defines with `curl`, once
    ready and targeted by a campaign, is offered with its Vietnamese (and English) name and
    shows its value, a rate as a percentage."""
    admin = stack.headers()
    definitions = {
        "cccd.issued.dashboard": {
            "kind": "count",
            "event_type": "cccd.issued",
            "name_vi": "Căn cước cấp trong đợt thử",
            "name_en": "ID cards of the trial drive",
            "unit": "thẻ",
        },
        "cccd.issued.dashboard_rate": {
            "kind": "rate",
            "numerator": ["cccd.issued.dashboard"],
            "denominator": ["eid.activated"],
            "name_vi": "Tỷ lệ căn cước trên định danh",
            "name_en": "ID cards per e-ID",
            "unit": "%",
        },
    }
    for indicator, definition in definitions.items():
        response = httpx.put(
            stack.url("api", f"/v1/indicators/{indicator}"), json=definition, headers=admin
        )
        assert response.status_code == 201, response.text
    deadline = time.monotonic() + 120
    while True:
        listed = httpx.get(stack.url("api", "/v1/indicators"), headers=admin).json()
        statuses = {i["id"]: i["status"] for i in listed if i["id"] in definitions}
        if set(statuses.values()) == {"ready"}:
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.5)
    campaign = "dashboard-registry-2024"
    targets = [
        ("binh-phuoc", "cccd.issued.dashboard", 50),
        ("binh-phuoc", "cccd.issued.dashboard_rate", 0.1),
    ]
    put_campaign(stack, campaign, "Chỉ tiêu mới", ("2024-04-01", "2024-06-30"), targets)

    page = browser.new_context(locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh").new_page()
    page.set_default_timeout(15_000)
    page.goto(stack.url("api", "/"))
    page.get_by_label("Mã truy cập").fill(viewer)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_selector("#board:not([hidden])")
    page.locator("#date").fill(DAY)
    page.locator("#date").dispatch_event("change")
    page.select_option("#campaign", campaign)
    page.wait_for_function("() => document.querySelector('#metric').options.length === 2")
    options = page.locator("#metric option").all_inner_texts()
    assert sorted(options) == ["Căn cước cấp trong đợt thử", "Tỷ lệ căn cước trên định danh"]
    # The values are the API's: the 37 ID cards of Minh Hưng, and their share of the e-IDs, as
    # a percentage since the registry says it is a rate.
    progress = httpx.get(
        stack.url("api", f"/v1/campaigns/{campaign}/progress"),
        params={"unit_id": "binh-phuoc", "at": DAY},
        headers=stack.headers(viewer),
    ).json()
    values = {m["metric"]: m["value"] for m in progress["units"][0]["metrics"]}
    assert values["cccd.issued.dashboard"] == 37
    wait_for_text(page, "#cards [data-metric='cccd.issued.dashboard'] .value", vi_int(37))
    rate = values["cccd.issued.dashboard_rate"]
    assert 0 < rate < 1
    assert card_value(page, "cccd.issued.dashboard_rate") == vi_pct(rate * 100)
    assert page.locator("#cards [data-metric='cccd.issued.dashboard'] h3").inner_text() == (
        "Căn cước cấp trong đợt thử"
    )
    page.close()


def test_dashboard_shows_a_lost_connection_and_reconnects(
    browser: Browser, stack: Pipeline, viewer: str
) -> None:
    # Access logs on, so the check below that the token is in no log line could fail.
    stack.kill("api")
    stack.env["LOG_LEVEL"] = "info"
    stack.start("api")
    page = open_dashboard(browser, stack, viewer, viewport={"width": 1280, "height": 900})
    before = stack.total("binh-phuoc", "cccd.issued", "month:2024-04")["value"]
    wait_for_text(page, "#cards [data-metric='cccd.issued'] .value", vi_int(before))
    wait_for_text(page, "#conn strong", "Trực tiếp")

    stack.kill("api")  # the network loss, as the browser sees it
    page.wait_for_selector("#lost:not([hidden])", timeout=10_000)
    assert "Mất kết nối" in page.locator("#lost").inner_text()
    assert page.locator("#conn").get_attribute("data-state") == "lost"
    page.screenshot(path=str(ARTIFACTS / "dashboard-lost.png"))

    stack.start("api")
    wait_for_text(page, "#conn strong", "Trực tiếp", 15_000)
    assert page.locator("#lost").is_hidden()
    response = stack.post(make_event("cccd.issued", "bu-dop-tan-tien", at(DAY, 16)))
    posted = time.monotonic()
    assert response.status_code == 202
    wait_for_text(page, "#cards [data-metric='cccd.issued'] .value", vi_int(before + 1), 5_000)
    assert time.monotonic() - posted < 2.0
    page.context.close()

    log = Path(stack.services["api"].log_path).read_text(errors="replace")
    assert "/v1/stream" in log  # the access log is on
    assert viewer not in log


def test_software_usage_and_the_hotline_follow_the_reporting_cycle(
    browser: Browser, stack: Pipeline, viewer: str
) -> None:
    # The seed's 1022 figures (21/3 – 22/4), and a few meetings and documents of Sở TT&TT: on
    # 22 April the software-usage table covers the cycle 21/3 – 20/4, the hotline 21/3 – 22/4.
    events = hotline_events("so-tt-tt", seed=401)
    meetings = [
        ("2024-03-21", True),
        ("2024-04-20", True),
        ("2024-04-21", True),
        ("2024-04-10", False),
    ]
    events += [
        make_event(
            "meeting.held",
            "so-tt-tt",
            at(day),
            attributes={"paperless": paperless, "platform": "ecabinet"},
        )
        for day, paperless in meetings
    ]
    events += [
        make_event(
            "document.issued",
            "so-tt-tt",
            at("2024-04-0" + str(1 + i)),
            attributes={"signed": i < 3, "online": True},
        )
        for i in range(4)
    ]
    BackgroundPoster(stack, events).join()
    stack.wait_reflected()
    page = open_dashboard(browser, stack, viewer, viewport={"width": 1280, "height": 900})
    assert page.locator("#usage-title").inner_text().endswith("21/3/2024 – 20/4/2024")
    assert page.locator("#hotline-title").inner_text().endswith("21/3/2024 – 22/4/2024")
    shown = {
        metric: page.locator(f"#hotline [data-metric='{metric}'] td").inner_text()
        for metric in ("hotline.received", "hotline.processed", "hotline.in_progress")
    }
    assert shown == {
        "hotline.received": "360",
        "hotline.processed": "351",
        "hotline.in_progress": "9",
    }
    assert page.locator("#hotline [data-metric='hotline.forwarded'] th").inner_text() == (
        "Tin chuyển các ngành xử lý"
    )
    report = httpx.get(
        stack.url("api", "/v1/reports/software-usage"),
        params={"from": "2024-03-21", "to": "2024-04-20"},
        headers=stack.headers(viewer),
    ).json()
    row = next(r for r in report["rows"] if r["unit_id"] == "so-tt-tt")
    assert (row["ecabinet_meetings_period"], row["signed_documents"]["percent"]) == (2, 75.0)
    cells = "#usage tr[data-unit='so-tt-tt'] [data-cell='{}']"
    assert page.locator(cells.format("ecabinet_meetings_period")).inner_text() == "2"
    assert page.locator(cells.format("signed_documents")).inner_text() == "75,00%"
    total = "#usage tr[data-unit='total'] [data-cell='ecabinet_meetings_total']"
    assert page.locator(total).inner_text() == vi_int(report["total"]["ecabinet_meetings_total"])
    page.context.close()


# WCAG 2 contrast ratio of each element's text colour against its nearest opaque background.
CONTRAST_JS = """
(selector) => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] === 1) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  let worst = 21;
  for (const el of document.querySelectorAll(selector)) {
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
    worst = Math.min(worst, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05));
  }
  return worst;
}
"""
