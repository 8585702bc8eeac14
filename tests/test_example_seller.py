"""The README's example seller program, run as written against a real `haggler serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx

from haggler.config import DQNConfig
from haggler.learning.dqn import BuyerAgent
from servers import Server

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seller.py"
OPERATOR = {"Authorization": "Bearer op"}


def test_the_example_seller_program_negotiates_to_the_end(tmp_path: Path) -> None:
    BuyerAgent(DQNConfig(hidden_sizes=(32,), batch_size=8)).save_model(
        tmp_path / "models" / "buyer_agent.pth"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("HAGGLER_")}
    env |= {"DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}", "OPERATOR_TOKEN": "op"}
    server = Server(env, tmp_path)
    try:
        for account in (
            {"name": "pat", "role": "purchaser"},
            {"name": "acme", "role": "seller", "purchaser": "pat"},
        ):
            made = httpx.post(f"{server.url}/api/accounts", json=account, headers=OPERATOR)
            assert made.status_code == 201, made.text
        token = httpx.post(
            f"{server.url}/api/accounts/acme/tokens", json={"label": "example"}, headers=OPERATOR
        ).json()["token"]
        ran = subprocess.run(
            [sys.executable, str(EXAMPLE)],
            env={**env, "HAGGLER_URL": server.url, "HAGGLER_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr
        lines = ran.stdout.splitlines()
        assert lines[0].startswith("round 1 of 10: agent counter ")
        assert lines[-1].split()[0] in ("deal", "buyer_walked", "deadline")
        assert lines[-1].endswith("EUR")
        mine = httpx.get(
            f"{server.url}/api/sell/negotiations", headers={"Authorization": f"Bearer {token}"}
        )
        assert mine.json()["total"] == 1 and mine.json()["items"][0]["status"] == "finished"
    finally:
        server.stop()
