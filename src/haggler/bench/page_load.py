"""How fast a page of the web app is ready: the time from navigation start until every chart on
it is drawn with data, in Chromium, against a real `haggler serve`.

The server runs on a temporary SQLite store that already holds what an operator looks at: some
finished negotiations against simulated sellers, learned from online (so the loss, replay-buffer
and exploration charts have points), checkpoints and a restore. Then the page is loaded `loads`
times with a cold cache (a fresh browser context each time: nothing cached, as on a first visit)
and `loads` times with a warm one (the same context, after a first load).

"Drawn with data" is read off the page itself, the same way whatever the page's code: every
element matching `chart_selector` holds a plotly plot whose SVG has a trace drawn in it (a line
or a point; an empty chart's "No data yet" does not count). A script the browser runs before the
page's own watches the document and notes `performance.now()` (milliseconds since navigation
start) at the first change after which that holds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from haggler.bench.crash import ServeProcess
from haggler.bench.service import OPERATOR_TOKEN
from haggler.core.sellers import TRAINING_STRATEGIES

HAGGLER = Path(sys.executable).with_name("haggler")
OPERATOR_NAME = "bench.operator"
OPERATOR_PASSWORD = "bench-page-load-password"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

# Runs before the page's scripts: notes when every chart first shows a drawn trace.
WATCH_CHARTS = """
(() => {
  const selector = SELECTOR;
  const drawn = (chart) => chart.querySelector(
    ".main-svg .scatterlayer .trace path.js-line, .main-svg .scatterlayer .trace path.point, "
    + ".main-svg .barlayer .trace path");
  const look = () => {
    if (window.__chartsDrawnAt !== undefined || document.readyState === "loading") return;
    const charts = [...document.querySelectorAll(selector)];
    if (charts.length > 0 && charts.every(drawn)) {
      window.__chartsDrawnAt = performance.now();
      observer.disconnect();
    }
  };
  const observer = new MutationObserver(look);
  observer.observe(document, { childList: true, subtree: true, attributes: true });
  document.addEventListener("DOMContentLoaded", look);
})();
"""


@dataclass(frozen=True)
class PageLoadConfig:
    """What to load, how often, on what store."""

    path: str = "/dashboard"
    """The page to load, signed in as an operator."""
    chart_selector: str = ".chart"
    """The page's charts: the load ends when every one is drawn with data."""
    loads: int = 10
    """Measured loads with a cold cache, and as many with a warm one."""
    negotiations: int = 200
    """Finished negotiations in the store, against simulated sellers, all learned from."""
    width: int = 1440
    """Browser window width, in CSS pixels."""
    height: int = 900
    """Browser window height, in CSS pixels."""
    chromium: Path = Path("/usr/bin/chromium")
    """The Chromium to drive (Debian's)."""
    model_path: Path | None = None
    """The model the server starts from [default: the starter model shipped with haggler]."""
    timeout_s: float = 30.0
    """Longest wait for one load's charts."""


@dataclass(frozen=True)
class Timings:
    """Milliseconds from navigation start until the charts were drawn, one per load."""

    loads_ms: list[float]
    median_ms: float = field(init=False)
    min_ms: float = field(init=False)
    max_ms: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "median_ms", statistics.median(self.loads_ms))
        object.__setattr__(self, "min_ms", min(self.loads_ms))
        object.__setattr__(self, "max_ms", max(self.loads_ms))


@dataclass(frozen=True)
class Transfer:
    """One file the page loaded, as the browser's resource timing saw it on a cold load."""

    url: str
    transferred_bytes: int
    """On the wire, headers included (compressed if it was)."""
    decoded_bytes: int
    """After decompression: what the browser parsed."""
    duration_ms: float


@dataclass(frozen=True)
class PageLoadResult:
    config: dict[str, Any]
    cold: Timings
    warm: Timings
    scripts: list[Transfer]
    """The scripts of the last cold load."""


def _call(url: str, method: str = "GET", body: Any = None) -> Any:
    """The API as the operator (its token)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read()
    return json.loads(text) if text else None


def _add_operator(env: dict[str, str], work: Path) -> None:
    """The account the browser signs in as, created before the server starts (as an operator
    would: `haggler users add`)."""
    subprocess.run(
        [str(HAGGLER), "users", "add", OPERATOR_NAME, "--role", "operator", "--password-stdin"],
        input=f"{OPERATOR_PASSWORD}\n",
        env=env,
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _fill_store(url: str, negotiations: int, timeout_s: float = 300.0) -> None:
    """Play `negotiations` against simulated sellers with training on, wait until the learner
    has learned from all of them, restore the oldest checkpoint, turn training off."""
    product = _call(f"{url}/api/products")[0]
    limit = f"{0.9 * float(product['list_price']):.2f}"
    for i in range(negotiations):
        strategy = TRAINING_STRATEGIES[i % len(TRAINING_STRATEGIES)]
        body = {
            "product_id": product["id"],
            "max_unit_price": limit,
            "seller": {"kind": "simulated", "strategy": strategy, "seed": i},
        }
        _call(f"{url}/api/negotiations", "POST", body)
    deadline = time.monotonic() + timeout_s
    while _call(f"{url}/api/training")["negotiations_trained"] < negotiations:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the learner did not learn from {negotiations} in {timeout_s} s")
        time.sleep(0.5)
    checkpoints = _call(f"{url}/api/checkpoints")
    if checkpoints:
        _call(f"{url}/api/checkpoints/restore", "POST", {"checkpoint": checkpoints[0]["name"]})
    _call(f"{url}/api/training", "PUT", {"enabled": False})


def _load(page: Any, url: str, timeout_s: float) -> float:
    """Load `url` in `page`; milliseconds from navigation start until its charts were drawn."""
    page.goto(url, wait_until="commit")
    # Functions, not expressions: the app's CSP forbids evaluating a string.
    page.wait_for_function(
        "() => window.__chartsDrawnAt !== undefined", timeout=timeout_s * 1000, polling=50
    )
    return float(page.evaluate("() => window.__chartsDrawnAt"))


def _scripts(page: Any) -> list[Transfer]:
    entries = page.evaluate(
        "() => performance.getEntriesByType('resource')"
        ".filter((e) => e.initiatorType === 'script')"
        ".map((e) => [e.name, e.transferSize, e.decodedBodySize, e.duration])"
    )
    return [Transfer(name, int(sent), int(size), float(ms)) for name, sent, size, ms in entries]


def measure(url: str, config: PageLoadConfig) -> PageLoadResult:
    """Load the page at `url` (a running server's) `config.loads` times cold, then warm."""
    from playwright.sync_api import sync_playwright

    page_url = f"{url}{config.path}"
    watch = WATCH_CHARTS.replace("SELECTOR", json.dumps(config.chart_selector))
    viewport = {"width": config.width, "height": config.height}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(config.chromium), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:

            def signed_in_context() -> Any:
                context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
                context.add_init_script(watch)
                answer = context.request.post(
                    f"{url}/api/session",
                    data={"name": OPERATOR_NAME, "password": OPERATOR_PASSWORD},
                )
                if not answer.ok:
                    raise RuntimeError(f"could not sign in: {answer.status} {answer.text()}")
                return context

            cold = []
            scripts: list[Transfer] = []
            for _ in range(config.loads):
                context = signed_in_context()
                page = context.new_page()
                cold.append(_load(page, page_url, config.timeout_s))
                scripts = _scripts(page)
                context.close()
            context = signed_in_context()
            page = context.new_page()
            _load(page, page_url, config.timeout_s)  # fills the cache
            warm = [_load(page, page_url, config.timeout_s) for _ in range(config.loads)]
            context.close()
        finally:
            browser.close()
    return PageLoadResult(asdict(config), Timings(cold), Timings(warm), scripts)


def run(config: PageLoadConfig) -> PageLoadResult:
    """Start a server on a fresh store, fill it, measure the page, stop the server."""
    if not config.chromium.exists():
        raise RuntimeError(f"no Chromium at {config.chromium} (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="haggler-page-load-") as folder:
        work = Path(folder)
        model = work / "buyer_agent.pth"
        if config.model_path is None:
            model.write_bytes(files("haggler.data").joinpath("starter_model.pth").read_bytes())
        else:
            model.write_bytes(config.model_path.read_bytes())
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{work / 'haggler.db'}",
            "MODEL_PATH": str(model),
            "CHECKPOINT_DIR": str(work / "checkpoints"),
            "ENABLE_TRAINING": "true",
            "SAVE_INTERVAL": str(max(1, config.negotiations // 4)),
            "OPERATOR_TOKEN": OPERATOR_TOKEN,
            "RATE_LIMIT_PER_SECOND": "0",
            # The learner's replay anchor: a few simulated negotiations, not 1,000.
            "REPLAY_ANCHOR_NEGOTIATIONS": "20",
        }
        _add_operator(env, work)
        server = ServeProcess(env, work)
        server.start()
        try:
            server.wait_until_ready(OPERATOR_TOKEN, learner=False)
            url = f"http://127.0.0.1:{server.port}"
            _fill_store(url, config.negotiations)
            return measure(url, config)
        except BaseException:
            sys.stderr.write(server.log.read_text()[-4000:])
            raise
        finally:
            server.stop()
