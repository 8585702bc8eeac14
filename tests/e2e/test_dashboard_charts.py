"""The dashboard's learning curves and version tables in a real browser, against a real
`haggler serve` that has learned from a few negotiations: axis titles in their units, exploration
drawn as steps, hover values to fixed decimals, restores, promotions and A/B tests marked on the
charts, the tables saying which version serves and which is the newest; and how the chart library
and the event stream travel (compressed and cacheable, and not held back by compression).

Screenshots of the whole dashboard at 1440x900 and 390x844 go to build/screenshots/.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator

import httpx2 as httpx
import pytest
import test_web
from playwright.sync_api import Page, Route, expect
from test_web import (
    AUTH,
    SCREENSHOTS,
    OpenPage,
    api,
    next_update,
    simulated,
    start_server,
    trained_on,
)

from servers import Server

# The browser and its pages, error-free console included, as the other web tests have them.
browser = test_web.browser
console = test_web.console
open_page = test_web.open_page

VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
CHARTS = {
    "loss": ("Negotiations learned from", "Loss (Huber, per update)"),
    "reward": ("Negotiations finished", "Reward (\u22121 to 1)"),
    "success": ("Negotiations finished", "Deals (% of negotiations)"),
    "savings": ("Negotiations finished", "Saving (% of list price)"),
    "buffer": ("Negotiations learned from", "Experiences (transitions)"),
    "epsilon": ("Negotiations learned from", "Exploration rate ε"),
}
PLAYED = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Training on, a checkpoint every two negotiations, after PLAYED negotiations learned from."""
    server = start_server(
        tmp_path_factory.mktemp("charts"), ENABLE_TRAINING="true", SAVE_INTERVAL="2"
    )
    for seed in range(PLAYED):
        simulated(server, seed, "tit_for_tat")
    trained_on(server, PLAYED)
    yield server
    server.stop()


def open_dashboard(open_page: OpenPage, server: Server, size: str) -> Page:
    """The dashboard at `size`, its charts drawn with their data."""
    page = open_page("phone" if size == "phone" else "desktop")
    page.set_viewport_size(VIEWPORTS[size])
    page.goto(f"{server.url}/dashboard")
    for name in CHARTS:  # every chart drawn with its data
        line = page.locator(f"#chart-{name} .scatterlayer .trace path.js-line")
        expect(line.first).to_be_attached()
    expect(page.locator("#charts-error")).to_be_empty()
    return page


def hover_text(page: Page, chart: str, curve: int, point: int, subplot: str = "xy") -> str:
    """The hover label of one point, as plotly draws it when the pointer is on it."""
    text: str = page.evaluate(
        """([chart, curve, point, subplot]) => {
            const gd = document.getElementById(`chart-${chart}`);
            Plotly.Fx.hover(gd, [{ curveNumber: curve, pointNumber: point }], subplot);
            const labels = gd.querySelectorAll(".hoverlayer .hovertext");
            return [...labels].map((e) => e.textContent).join(" | ");
        }""",
        [chart, curve, point, subplot],
    )
    return text


def event_trace(page: Page, chart: str, kind: str) -> int:
    """The index of the trace that marks events of `kind` on a chart (-1: none)."""
    index: int = page.evaluate(
        "([chart, kind]) => document.getElementById(`chart-${chart}`).data"
        ".findIndex((t) => t.meta?.event === kind)",
        [chart, kind],
    )
    return index


def marks(page: Page, chart: str) -> list[str]:
    """The kinds of event marked on a chart, once each is drawn (a line in its overlay)."""
    kinds: list[str] = page.evaluate(
        """(chart) => {
            const gd = document.getElementById(`chart-${chart}`);
            const kinds = gd.data.filter((t) => t.meta?.event).map((t) => t.meta.event);
            const lines = gd.querySelectorAll(".overplot .xy2 .scatterlayer .trace path.js-line");
            return lines.length === kinds.length ? kinds : [];
        }""",
        chart,
    )
    return kinds


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_the_learning_curves_have_axis_titles_steps_readable_hovers_and_the_pages_width(
    server: Server, open_page: OpenPage, size: str
) -> None:
    page = open_dashboard(open_page, server, size)
    for name, (x_title, y_title) in CHARTS.items():
        expect(page.locator(f"#chart-{name} .xtitle")).to_have_text(x_title)
        expect(page.locator(f"#chart-{name} .ytitle")).to_have_text(y_title)
    expect(page.locator("#chart-success .ytick").last).to_have_text("100%")

    # The exploration rate and the replay buffer hold between the learner's updates: steps, a
    # path of horizontal and vertical moves only.
    for name in ("epsilon", "buffer"):
        path = page.locator(f"#chart-{name} .scatterlayer .trace path.js-line").first
        assert re.fullmatch(r"M[\d.]+,[\d.]+([HV][\d.]+)+", path.get_attribute("d") or ""), name

    # Hovers give fixed decimals, never an SI suffix ("673.4177μ").
    history = api(server, "GET", "/api/training/history")["points"]
    epsilon = hover_text(page, "epsilon", 0, len(history) - 1)
    assert f"Exploration rate: {history[-1]['epsilon']:.3f}" in epsilon
    loss = hover_text(page, "loss", 1, len(history) - 1)  # the moving average
    assert re.search(r"Moving average of 20: \d+\.\d{4}\b", loss), loss
    buffer = hover_text(page, "buffer", 0, len(history) - 1)
    assert f"Replay buffer: {history[-1]['replay_buffer_size']:,}" in buffer
    reward = hover_text(page, "reward", 1, PLAYED - 1)
    assert re.search(r"Negotiation #\d+, no\. 6 to finish.*: -?\d+\.\d{3}\b", reward), reward
    for text in (epsilon, loss, buffer, reward):
        assert "μ" not in text and "e-" not in text

    # The charts use the page: two abreast on a desktop, one per row on a phone.
    width = VIEWPORTS[size]["width"]
    boxes = [page.locator(f"#chart-{name}").bounding_box() for name in CHARTS]
    assert all(box is not None for box in boxes)
    widths = [box["width"] for box in boxes if box is not None]
    assert min(widths) > (0.4 if size == "desktop" else 0.8) * width
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the dashboard scrolls sideways at {size} size"
    expect(page.locator("#live-status")).to_contain_text("Live:")
    page.evaluate(
        "() => { for (const gd of document.querySelectorAll('.chart')) Plotly.Fx.unhover(gd); }"
    )
    shoot(page, f"dashboard-charts-{size}")


def test_the_charts_wait_for_a_chart_library_slower_than_the_data(
    server: Server, open_page: OpenPage
) -> None:
    """The page asks for its data while plotly.js still loads: with the library last, the
    tables come first and the charts are drawn once it has run, by the page's first load alone
    (the event stream, whose first update makes the page load everything again, sends none)."""
    page = open_page("desktop")

    def slow(route: Route) -> None:
        expect(page.locator("#versions tbody tr").first).to_be_attached()  # the data came
        route.fulfill(response=route.fetch())

    page.route("**/vendor/plotly-*", slow)
    page.route(
        "**/api/events",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=""),
    )
    page.goto(f"{server.url}/dashboard")
    for name in CHARTS:
        line = page.locator(f"#chart-{name} .scatterlayer .trace path.js-line")
        expect(line.first).to_be_attached()
    expect(page.locator("#charts-error")).to_be_empty()


def test_restores_promotions_and_ab_tests_are_marked_and_the_tables_say_what_serves(
    server: Server, open_page: OpenPage
) -> None:
    page = open_dashboard(open_page, server, "desktop")
    checkpoints = api(server, "GET", "/api/checkpoints")
    oldest, newest = checkpoints[0]["name"], checkpoints[-1]["name"]
    expect(page.locator("#checkpoints tbody tr", has_text=newest)).to_contain_text("newest")

    # The operator restores the oldest checkpoint from its row.
    row = page.locator("#checkpoints tbody tr", has_text=oldest)
    row.get_by_role("button", name=f"Restore {oldest}").click()
    page.click("#dialog-confirm")
    expect(page.locator("#operator-dialog")).to_be_hidden()
    restored = api(server, "GET", "/api/training")["model_version"]
    expect(page.locator("#model-version")).to_have_text(str(restored))
    expect(row.locator("td").nth(2)).to_contain_text("serving")
    expect(row.locator("td").nth(2)).to_contain_text(f"restored as version {restored}")
    expect(row).to_have_class(re.compile(r"\bserving\b"))
    serving_version = page.locator(f"#versions tbody tr[data-version='{restored}']")
    expect(serving_version.locator("td").nth(1)).to_have_text(re.compile(r"serving\s*newest"))

    expect(page.locator("#event-key")).to_contain_text("Restore of a checkpoint")
    for chart in CHARTS:
        assert marks(page, chart) == ["restore"], chart
    marker = hover_text(page, "reward", event_trace(page, "reward", "restore"), 1, "xy2")
    assert f"Restored {oldest} as version {restored}" in marker

    # An A/B test of the starter model against it, promoted: three more marks, and the table
    # says version 1 serves while the restored version is still the newest.
    api(server, "PUT", "/api/training", json={"enabled": False})
    test = api(server, "POST", "/api/ab-tests", json={"challenger_version": 1, "split": 0.5})
    decision = {"decision": "promote", "reason": "the starter deals more"}
    api(server, "POST", f"/api/ab-tests/{test['id']}/decision", json=decision)
    expect(page.locator("#model-version")).to_have_text("1")  # live, from the event stream
    for chart in CHARTS:
        assert marks(page, chart) == ["restore", "promotion", "ab_test_start", "ab_test_end"]
    promotion = hover_text(page, "reward", event_trace(page, "reward", "promotion"), 1, "xy2")
    assert "Version 1 promoted to serve" in promotion and "won A/B test" in promotion
    ended = hover_text(page, "loss", event_trace(page, "loss", "ab_test_end"), 1, "xy2")
    assert f"A/B test {test['id']} ended: version 1 promoted" in ended
    expect(page.locator("#versions tbody tr[data-version='1'] td").nth(1)).to_have_text("serving")
    expect(serving_version.locator("td").nth(1)).to_have_text("newest")
    expect(row.locator("td").nth(2)).not_to_contain_text("serving")

    # Over time, the marks stay, at their moments.
    page.select_option("#axis", "time")
    expect(page.locator("#chart-reward .xtitle")).to_contain_text("Time (")
    assert marks(page, "reward") == ["restore", "promotion", "ab_test_start", "ab_test_end"]
    shoot(page, "dashboard-events-desktop")


def test_the_chart_library_is_served_compressed_cacheable_and_deferred(
    server: Server, open_page: OpenPage
) -> None:
    page = open_dashboard(open_page, server, "desktop")
    script = page.locator("head script[src*='plotly']")
    expect(script).to_have_attribute("defer", "")
    src = script.get_attribute("src") or ""
    assert re.fullmatch(r"/vendor/plotly-basic-\d+\.\d+\.\d+\.min\.js", src), src
    sent = page.evaluate(
        "(src) => performance.getEntriesByType('resource').filter((e) => e.name.endsWith(src))"
        ".map((e) => [e.transferSize, e.decodedBodySize])[0]",
        src,
    )
    assert sent[0] < sent[1] / 2, "the browser got plotly.js uncompressed"

    url = f"{server.url}{src}"
    compressed = httpx.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10)
    plain = httpx.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    assert compressed.status_code == plain.status_code == 200
    assert compressed.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    for answer in (compressed, plain):
        assert answer.headers["content-type"].startswith("text/javascript")
        assert "immutable" in answer.headers["cache-control"]
        assert "max-age=31536000" in answer.headers["cache-control"]
        assert "accept-encoding" in answer.headers["vary"].lower()
        assert "script-src 'self'" in answer.headers["content-security-policy"]
    wire = int(compressed.headers["content-length"])
    assert wire < int(plain.headers["content-length"]) / 2
    assert compressed.content == plain.content  # httpx decodes it: the same file
    assert b"plotly.js (basic - minified) v" in plain.content[:200]

    # The pages' other files and answers are compressed too, when big enough to be worth it.
    module = httpx.get(
        f"{server.url}/static/dashboard-safety.js", headers={"Accept-Encoding": "gzip"}, timeout=10
    )
    assert module.headers["content-encoding"] == "gzip"
    assert int(module.headers["content-length"]) < len(module.content) / 2
    # A move or a new negotiation (POST), the service's hot path, is answered uncompressed.
    body = {
        "product_id": 1,
        "max_unit_price": "289.00",
        "max_rounds": 20,
        "seller": {"kind": "simulated", "strategy": "hardliner", "seed": 1},
    }
    started = httpx.post(
        f"{server.url}/api/negotiations",
        json=body,
        headers={**AUTH, "Accept-Encoding": "gzip"},
        timeout=10,
    )
    assert started.status_code == 201, started.text
    assert len(started.content) > 1024 and "content-encoding" not in started.headers
    with httpx.stream("GET", url, headers={"Accept-Encoding": "gzip"}, timeout=10) as stream:
        assert gzip.decompress(b"".join(stream.iter_raw()))[:2] == b"//"


def test_the_event_stream_is_not_held_back_by_compression(server: Server) -> None:
    headers = {**AUTH, "Accept-Encoding": "gzip"}
    with httpx.stream("GET", f"{server.url}/api/events", headers=headers, timeout=15) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in stream.headers
        lines = stream.iter_lines()
        first = next_update(lines)  # while the stream is open: sent as it happens, not buffered
        played = simulated(server, 99)
        update = next_update(lines)
        while update["newest_id"] != played["id"]:  # a state from before it, first
            update = next_update(lines)
    assert update["negotiations"] > first["negotiations"]
