"""Load benchmark of the service: external-seller negotiations driven by wrk, training off vs on.

The load comes from wrk (a C client, its own process) with a Lua script that plays the seller:
each connection runs one negotiation after another, so `--connections` negotiations are in
flight at once. Two kinds of run: at a fixed offered rate (each seller waits a random time,
`connections/rate` seconds on average, before its next move, as a real seller thinks between
moves), which gives the latency a user sees at that load; and flat out (no waiting), which gives
the capacity. The server is a real `haggler serve` (with its learner process) on a fresh SQLite
store per run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# wrk keeps one Lua state per thread, not per connection: a response queues the next move of
# its negotiation, and the next request of that thread (on whichever connection) sends it.
SELLER_SCRIPT = r"""
local pending = {}
local started = 0

local function start()
  started = started + 1
  return wrk.format("POST", "/api/negotiations",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer OPERATOR_TOKEN"},
    '{"product_id": 1, "max_unit_price": "270.00", "max_rounds": 10,' ..
    ' "seller": {"kind": "external", "asking_price": "320.00"}}')
end

-- Milliseconds each connection waits before its next move (a seller thinking), drawn from an
-- exponential distribution: the moves of many sellers then arrive as a Poisson stream. (A fixed
-- wait keeps connections that started together in step, and they arrive in bursts.) 0: flat out.
local think_ms = THINK_MS
math.randomseed(SEED)

delay = function()
  if think_ms == 0 then return 0 end
  return math.floor(-think_ms * math.log(1 - math.random()))
end

request = function()
  local move = table.remove(pending)
  if move == nil then return start() end
  return wrk.format("POST", "/api/negotiations/" .. move.id .. "/moves",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. move.token},
    move.body)
end

response = function(status, headers, body)
  if status >= 300 then return end
  local token = string.match(body, '"seller_token":"([^"]+)"')
  local id = string.match(body, '"id":(%d+)')
  if token ~= nil then
    tokens = tokens or {}
    tokens[id] = token
  else
    token = tokens and tokens[id]
  end
  if token == nil or string.find(body, '"status":"finished"') then return end
  -- The seller's last ask and the buyer's last offer: concede 4% a round, accept a close offer.
  local ask, offer = 320.0, nil
  for party, price in string.gmatch(body, '"party":"(%a+)","move":"counter","price":"([%d%.]+)"') do
    if party == "seller" then ask = tonumber(price) else offer = tonumber(price) end
  end
  local body_out
  if offer ~= nil and offer >= ask * 0.9 then
    body_out = '{"move": "accept"}'
  else
    local next_ask = math.max(ask * 0.96, (offer or 0) + 0.05)
    body_out = string.format('{"move": "counter", "price": "%.2f"}', next_ask)
  end
  table.insert(pending, {id = id, token = token, body = body_out})
end
"""


@dataclass(frozen=True)
class LoadResult:
    training: bool
    rate: float | None
    """Offered turns per second (None: flat out)."""
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    update_delay_median_s: float | None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _latency_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no {percentile}% latency:\n{text}")
    value, unit = float(match[1]), match[2]
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


OPERATOR_TOKEN = "bench-operator"
"""The benchmark's server registers it as the operator account's token (OPERATOR_TOKEN)."""


def _get_json(url: str) -> dict[str, object]:
    import json

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return dict(json.loads(answer.read()))


def _wait_until_ready(url: str, server: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    """Wait for the server to answer and its learner to have caught up with the store: the
    figures are of a service at work, not of one still starting (loading torch takes the
    learner seconds of CPU)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if _get_json(f"{url}/api/training").get("learner_ready"):
                return
        except OSError:
            pass
        if server.poll() is not None:
            raise RuntimeError("the server stopped while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server and its learner were not ready in {timeout:.0f} s")
        time.sleep(0.2)


def run_once(
    model_path: Path,
    *,
    training: bool,
    seconds: int,
    connections: int,
    threads: int,
    rate: float | None = None,
) -> LoadResult:
    """Start a server on a fresh store, load it with wrk (at `rate` turns/s offered, or flat
    out if None), stop it, and return the figures."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: `apt-get install wrk`")
    with tempfile.TemporaryDirectory(prefix="haggler-bench-") as folder:
        work = Path(folder)
        script = work / "seller.lua"
        port = _free_port()
        think_ms = 0 if rate is None else round(1000 * connections / rate)
        script.write_text(
            SELLER_SCRIPT.replace("THINK_MS", str(think_ms))
            .replace("SEED", str(port))
            .replace("OPERATOR_TOKEN", OPERATOR_TOKEN)
        )
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{work / 'haggler.db'}",
            "MODEL_PATH": str(model_path.resolve()),
            "CHECKPOINT_DIR": str(work / "checkpoints"),
            "ENABLE_TRAINING": "true" if training else "false",
            "OPERATOR_TOKEN": OPERATOR_TOKEN,
            # One client opens every negotiation: the per-client rate limit would be the
            # bottleneck measured (the abuse benchmark measures the limits).
            "RATE_LIMIT_PER_SECOND": "0",
        }
        haggler = Path(sys.executable).with_name("haggler")
        server = subprocess.Popen(
            [str(haggler), "serve", "--port", str(port)],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_ready(url, server)
            command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
            output = subprocess.run(
                [*command, "-s", str(script), url], capture_output=True, text=True, check=True
            ).stdout
            time.sleep(1.0)  # the last negotiations' updates reach serving
            status = _get_json(f"{url}/api/training")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    achieved = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if achieved is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    delay = status.get("update_delay_median_s")
    return LoadResult(
        training=training,
        rate=rate,
        requests_per_second=float(achieved[1]),
        p50_ms=_latency_ms(output, "50"),
        p99_ms=_latency_ms(output, "99"),
        requests=int(total[1]),
        errors=int(errors[1]) if errors else 0,
        update_delay_median_s=float(delay) if isinstance(delay, int | float) else None,
    )
