"""The dashboard's safe-learning section in a real browser, against a real `haggler serve`: the
guards, a running A/B test with both arms' figures, the operator's decision, candidates evaluated
and A/B tested on demand, a rollback notice, at phone and desktop sizes.

The server starts from two stored versions: the starter model (version 1) and a checkpoint of
another network restored over it (version 2), so that the older one can be A/B tested against the
one that serves. Training stays off: the arms' figures depend only on the negotiations played.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
import test_web
from playwright.sync_api import Page, Route, expect
from test_web import AUTH, SCREENSHOTS, SIZES, OpenPage, api, simulated, start_server

from haggler.config import DQNConfig
from haggler.learning.dqn import BuyerAgent
from servers import Server

# The browser and its pages, error-free console included, as the other web tests have them.
browser = test_web.browser
console = test_web.console
open_page = test_web.open_page

CHECKPOINT = "buyer_agent_n10_20240101_120000.pth"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Gated promotion with A/B tests, safe exploration, no automatic rollback (a few dozen
    negotiations are too few for the monitor anyway), the learner in a thread (it looks at the
    A/B test seconds sooner than a process of its own that imports torch first); version 2
    serves, version 1 is stored."""
    workdir = tmp_path_factory.mktemp("safety")
    other = BuyerAgent(DQNConfig(hidden_sizes=(32,), batch_size=8, seed=1))
    other.save_model(workdir / "models" / "checkpoints" / CHECKPOINT, negotiations=10)
    server = start_server(
        workdir,
        PROMOTION="gated",
        EXPLORATION="safe",
        AB_SPLIT="0.5",
        AUTO_ROLLBACK="false",
        LEARNER="thread",
    )
    api(server, "POST", "/api/checkpoints/restore", json={"checkpoint": CHECKPOINT})
    yield server
    server.stop()


def start_test(server: Server, split: float = 0.5) -> dict[str, Any]:
    """An A/B test of the newest stored version that does not serve, against the one that does."""
    serving = api(server, "GET", "/api/safety")["serving_version"]
    challenger = next(m for m in api(server, "GET", "/api/models") if m["version"] != serving)
    body = {"challenger_version": challenger["version"], "split": split}
    test: dict[str, Any] = api(server, "POST", "/api/ab-tests", json=body)
    return test


def running_test(server: Server) -> dict[str, Any]:
    """The running A/B test, started and played if there is none, once the learner has looked
    at it: its verdict counts every negotiation played in both arms."""
    test = api(server, "GET", "/api/safety")["running_test"] or start_test(server)
    if test["verdict"] is None:
        time.sleep(0.3)  # the serving process picks the test up within 0.1 s
        for seed in range(8):
            simulated(server, seed, "tit_for_tat")
    deadline = time.monotonic() + 30
    while True:  # the learner looks at the running test every five seconds
        verdict = test["verdict"] or {}
        counts = [verdict.get(arm, {}).get("negotiations", 0) for arm in ("champion", "challenger")]
        if min(counts) >= 1 and sum(counts) >= 8:
            return test
        assert time.monotonic() < deadline, f"the learner did not judge A/B test {test['id']}"
        time.sleep(0.2)
        test = api(server, "GET", f"/api/ab-tests/{test['id']}")


def rejected_version(server: Server) -> int:
    """A version the operator rejected in an A/B test (decided through the API), with logged
    negotiations for the gate's off-policy estimates."""
    test = api(server, "GET", "/api/safety")["running_test"] or start_test(server)
    if api(server, "GET", "/api/negotiations?limit=1")["total"] < 4:
        for seed in range(4):
            simulated(server, seed, "tit_for_tat")
    body = {"decision": "reject", "reason": "not enough deals"}
    api(server, "POST", f"/api/ab-tests/{test['id']}/decision", json=body)
    return int(test["challenger_version"])


def confirm_as_operator(page: Page) -> None:
    """The signed-in operator confirms the dialog's action."""
    page.click("#dialog-confirm")
    expect(page.locator("#operator-dialog")).to_be_hidden()


def shoot_section(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#safety").screenshot(path=SCREENSHOTS / f"{name}.png")


@pytest.mark.parametrize("size", list(SIZES))
def test_the_safe_learning_section_at_both_sizes(
    server: Server, open_page: OpenPage, size: str
) -> None:
    test = running_test(server)
    page = open_page(size)
    page.goto(f"{server.url}/dashboard")
    facts = page.locator("#safety-facts")
    expect(facts).to_contain_text("gated: a new version serves only after passing")
    expect(page.locator("#exploration-mode")).to_contain_text("safe")
    expect(page.locator("#ab-split")).to_contain_text("50% of new negotiations")
    expect(page.locator("#auto-rollback")).to_have_text("Off")
    expect(page.locator("#serving-version")).to_have_text(str(test["champion_version"]))
    arms = page.locator("#ab-arms")
    expect(arms).to_be_visible()
    expect(page.locator("#ab-actions")).to_be_visible()
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('#safety input, #safety select, dialog input')]"
        ".filter((e) => e.labels.length === 0).map((e) => e.id)"
    )
    assert unlabelled == []
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the dashboard scrolls sideways at {size} size"
    shoot_section(page, f"dashboard-safety-{size}")


def test_the_operator_promotes_the_challenger_of_the_running_ab_test(
    server: Server, open_page: OpenPage
) -> None:
    test = running_test(server)
    champion, challenger = test["champion_version"], test["challenger_version"]
    verdict = test["verdict"]
    page = open_page("desktop")
    page.goto(f"{server.url}/dashboard")

    # Both arms, side by side, with the figures of the learner's last look.
    expect(page.locator("#ab-summary")).to_contain_text(
        f"challenger version {challenger} against champion version {champion}"
    )
    expect(page.locator("#ab-summary")).to_contain_text("50% of new negotiations")
    arms = page.locator("#ab-arms")
    expect(arms.locator("thead")).to_contain_text(f"Champion (version {champion})")
    expect(arms.locator("thead")).to_contain_text(f"Challenger (version {challenger})")
    for arm in ("champion", "challenger"):
        cell = arms.locator(f"td[data-arm={arm}]")
        expect(cell).to_have_text(str(verdict[arm]["negotiations"]))
    for name in ("Deal rate", "Average reward", "Average savings", "Surplus captured"):
        expect(arms.locator("tbody")).to_contain_text(name)
    expect(page.locator("#ab-reason")).to_have_text(verdict["reason"])
    expect(page.locator("#ab-verdict")).to_contain_text("always-valid 95% interval")

    page.click("#promote-challenger")
    expect(page.locator("#dialog-title")).to_have_text(f"Promote version {challenger}?")
    expect(page.locator("#reason")).to_be_focused()
    page.click("#dialog-confirm")
    expect(page.locator("#reason-error")).to_contain_text("Say why")
    expect(page.locator("#operator-dialog")).to_be_visible()
    assert api(server, "GET", f"/api/ab-tests/{test['id']}")["status"] == "running"
    page.fill("#reason", "better deals in the demo")
    confirm_as_operator(page)

    expect(page.locator("#ab-status")).to_contain_text(
        f"A/B test {test['id']} ended: version {challenger} promoted"
    )
    expect(page.locator("#no-ab-test")).to_be_visible()
    expect(page.locator("#ab-actions")).to_be_hidden()
    expect(page.locator("#serving-version")).to_have_text(str(challenger))
    expect(page.locator("#model-version")).to_have_text(str(challenger))  # live, once it serves
    past = page.locator("#ab-tests tbody tr").first
    for text in (f"#{test['id']}", "challenger promoted", "operator", "better deals in the demo"):
        expect(past).to_contain_text(text)
    ended = api(server, "GET", f"/api/ab-tests/{test['id']}")
    assert (ended["status"], ended["decided_by"]) == ("promoted", "operator")
    assert api(server, "GET", "/api/safety")["serving_version"] == challenger


def test_the_operator_evaluates_a_rejected_version_and_a_bad_split_starts_nothing(
    server: Server, open_page: OpenPage
) -> None:
    version = rejected_version(server)
    serving = api(server, "GET", "/api/safety")["serving_version"]
    page = open_page("desktop")
    page.goto(f"{server.url}/dashboard")
    row = page.locator("#candidates tbody tr", has_text="lost A/B test")
    expect(row).to_contain_text("rejected")
    expect(row.locator("td").first).to_have_text(str(version))

    # Evaluate: at once (it changes nothing, so no dialog), then the gate's verdict and figures.
    row.get_by_role("button", name=f"Evaluate version {version}").click()
    expect(page.locator("#operator-dialog")).to_be_hidden()
    title = page.locator("#evaluation-title")
    expect(title).to_contain_text(f"Version {version} against serving version {serving}")
    expect(title).to_contain_text("the gate")
    expect(page.locator("#evaluation-reason")).not_to_be_empty()
    checks = page.locator("#evaluation-checks tbody")
    for check in ("Surplus, held-out sellers", "Deal rate", "Reward, logged negotiations"):
        expect(checks).to_contain_text(check)
    logged = page.locator("#evaluation-logged")
    expect(logged).to_contain_text("doubly robust (WDR)")
    expect(logged).to_contain_text("Effective sample size")
    expect(logged).to_contain_text("95% interval")
    suite = page.locator("#evaluation-suite")
    expect(suite).to_contain_text("Deal rate where a deal was possible")
    expect(suite).to_contain_text("Surplus captured")
    expect(page.locator("#evaluation")).not_to_have_attribute("aria-busy", "true")
    shoot_section(page, "dashboard-safety-evaluated-desktop")

    # A/B test it: a split outside [0.05, 0.95] is refused next to the field, with no request.
    tests = len(api(server, "GET", "/api/ab-tests"))
    row.get_by_role("button", name=f"A/B test version {version}").click()
    expect(page.locator("#split")).to_be_focused()
    expect(page.locator("#challenger_version")).to_have_value(str(version))
    for bad in ("1.5", "0", "0.01", "-0.2", "half", ""):
        page.fill("#split", bad)
        page.click("#start-ab")
        expect(page.locator("#split-error")).to_contain_text("from 0.05 to 0.95")
        expect(page.locator("#split")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#operator-dialog")).to_be_hidden()
    assert len(api(server, "GET", "/api/ab-tests")) == tests

    # A good split starts the test once the operator confirms.
    page.fill("#split", "0.25")
    page.keyboard.press("Enter")
    expect(page.locator("#dialog-title")).to_have_text(f"Start an A/B test of version {version}?")
    confirm_as_operator(page)
    expect(page.locator("#split-error")).to_be_empty()
    expect(page.locator("#ab-summary")).to_contain_text(
        f"challenger version {version} against champion version {serving}"
    )
    expect(page.locator("#ab-summary")).to_contain_text("25% of new negotiations")
    running = api(server, "GET", "/api/safety")["running_test"]
    assert (running["challenger_version"], running["split"]) == (version, 0.25)


def test_a_rollback_stands_out(server: Server, open_page: OpenPage) -> None:
    """A rollback takes a degraded live window the learner must see, so the page is shown one
    the way the API reports it: the newest model-log entry, and `last_rollback`."""
    rollback = {
        **api(server, "GET", "/api/models?limit=1")[0],
        "version": 9,
        "source": "rollback",
        "status": "promoted",
        "copy_of": 1,
        "reason": "rolled back from version 8 to 1: deal rate fell from 62% to 31%",
    }

    def with_rollback(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        if "/api/safety" in route.request.url:
            body |= {"last_rollback": rollback, "rollbacks": 1, "serving_version": 9}
        else:
            body = [rollback, *body]
        route.fulfill(response=response, body=json.dumps(body))

    page = open_page("phone")
    page.route("**/api/safety", with_rollback)
    page.route("**/api/models?limit=50", with_rollback)
    page.goto(f"{server.url}/dashboard")
    notice = page.locator("#rollback-notice")
    expect(notice).to_contain_text("Rolled back from version 8 to 1 at ")
    expect(notice).to_contain_text(": deal rate fell from 62% to 31%")
    expect(notice).to_contain_text("Its weights serve as version 9.")
    changed = page.locator("#models tbody tr.rollback")
    expect(changed).to_contain_text("rollback to version 1")
    expect(changed).to_contain_text("deal rate fell")


def test_the_event_stream_announces_a_decided_ab_test(server: Server) -> None:
    """The dashboard refreshes on the stream: a decision nobody's negotiation caused (the
    operator's elsewhere, the stopping rule's, a rollback) must change what it sends."""
    test = api(server, "GET", "/api/safety")["running_test"] or start_test(server)
    with httpx.stream("GET", f"{server.url}/api/events", headers=AUTH, timeout=15) as stream:
        updates = (
            json.loads(line.removeprefix("data:"))
            for line in stream.iter_lines()
            if line.startswith("data:")
        )
        first = next(updates)
        body = {"decision": "reject", "reason": "decided elsewhere"}
        api(server, "POST", f"/api/ab-tests/{test['id']}/decision", json=body)
        second = next(updates)
    assert first["ab_test"]["id"] == test["id"]
    assert second["ab_test"] is None
    assert second["negotiations"] == first["negotiations"]
