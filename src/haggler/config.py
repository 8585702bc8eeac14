"""Settings: the DQN's hyperparameters (a dataclass) and the service's settings (environment)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from haggler.core.sellers import ALL_STRATEGIES

LEARNER_NICE = 10
"""The default of LEARNER_NICE: how much lower the learner's CPU priority is than the service's.
Linux shares a busy core by weight, 1024 at nice 0 and 110 at nice 10: the learner gets about a
tenth of what a CPU-bound process beside it gets. It used to run at SCHED_IDLE, which gets only
what nothing else wants. Measured with two CPU-bound processes on this 2-core machine: from a
cold start, SCHED_IDLE made no update in 180 s, nice 10 its first after 115 s (loading torch,
playing the replay anchor) and then took in 3 negotiations a second; once running, SCHED_IDLE
took in 0-10 negotiations in 30 s (stalling for 20 s), nice 10 50-70 (its CPU time 0.12 of a
hog's), nice 0 330-370."""


@dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of the buyer agent's deep Q-network (Mnih et al. 2015, van Hasselt 2016)."""

    hidden_sizes: tuple[int, ...] = (128, 128)
    """Widths of the hidden layers of the Q-network."""
    learning_rate: float = 5e-4
    """Adam step size."""
    gamma: float = 0.98
    """Discount per buyer move; negotiations last at most ~15 moves."""
    batch_size: int = 128
    """Transitions per gradient step."""
    buffer_size: int = 200_000
    """Replay buffer capacity, in transitions."""
    target_update_interval: int = 500
    """Gradient steps between hard copies of the online network into the target network."""
    max_grad_norm: float = 10.0
    """Gradients are clipped to this global norm."""
    seed: int = 0
    """Seeds the network's initial weights and the replay buffer's sampling."""


def _known_strategies(strategies: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [name for name in strategies if name not in ALL_STRATEGIES]
    if unknown:
        raise ValueError(f"unknown seller strategies {unknown}; known: {', '.join(ALL_STRATEGIES)}")
    return strategies


def _no_thin_split(split: float) -> float:
    if 0.0 < split < 0.05:
        raise ValueError("AB_SPLIT is 0 (no A/B tests) or at least 0.05")
    return split


class Settings(BaseSettings):
    """The settings of the product, from the environment or a `.env` file in the working directory.

    Built once by the entry point (CLI or app) and passed explicitly; never at import time.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    model_path: Path = Field(Path("models/buyer_agent.pth"), description="The main model file.")
    checkpoint_dir: Path = Field(Path("models/checkpoints"), description="Checkpoint folder.")
    enable_training: bool = Field(False, description="Learn online from every negotiation.")
    epsilon: float = Field(0.1, ge=0.0, le=1.0, description="Exploration rate while training.")
    exploration: Literal["epsilon", "safe"] = Field(
        "safe",
        description=(
            "How to explore while training: `safe` (at rate EPSILON, never with accept or "
            "walk-away; near-best counter-offers by a softmax on Q-values at "
            "EXPLORATION_TEMPERATURE) or `epsilon` (a uniformly random legal move at rate "
            "EPSILON, the first version's default). Measured over 3,000 negotiations of an "
            "unseen seller family: `epsilon` cost 0.040 live surplus against the frozen model, "
            "`safe` (at the default temperature and learning rate) +0.013 to +0.039 over three "
            "seeds' weight-averaged starter models (+0.005 to +0.025 from last iterates)."
        ),
    )
    exploration_temperature: float = Field(
        0.005,
        gt=0.0,
        le=10.0,
        description=(
            "Softmax temperature of `safe` exploration: lower tries the near-best counters "
            "more and the poor ones less. Measured over 3,000 negotiations of an unseen seller "
            "family (three seeds, learning rate 5e-5): live surplus against the frozen model "
            "-0.023/+0.006/+0.004 at 0.05, -0.000/+0.019/+0.002 at 0.01, -0.001/+0.024/+0.013 at "
            "0.005. The price: off-policy estimates of a policy that prefers a poor counter have "
            "fewer logged tries of it to go on."
        ),
    )
    online_learning_rate: float = Field(
        1.25e-5,
        gt=0.0,
        le=1.0,
        description=(
            "Adam's step size for online training (pretraining's is in the model file); a "
            "fortieth of pretraining's. Measured over 3,000 negotiations of each seller family "
            "in turn from the three seeds' models that never trained on it (21 streams): live "
            "surplus against the frozen model +0.034 on average, worst -0.008 (2.5e-5: +0.035, "
            "worst -0.018); forgetting of the training families 0.013 on average, more than "
            "0.02 in 7 streams (2.5e-5: 0.020, 10 streams)."
        ),
    )
    promotion: Literal["immediate", "gated"] = Field(
        "immediate",
        description=(
            "`immediate`: serving follows the learner after every update. `gated`: each "
            "checkpoint is a candidate that serves only if it passes the evaluation gate (and, "
            "with AB_SPLIT above 0, then an A/B test against the serving model)."
        ),
    )
    ab_split: Annotated[float, AfterValidator(_no_thin_split)] = Field(
        0.0,
        ge=0.0,
        le=0.95,
        description="Share of new negotiations a challenger plays in an A/B test (0: no tests).",
    )
    gate_reward_tolerance: float = Field(
        0.02, ge=0.0, le=1.0, description="Gate: how far below the champion's reward may be."
    )
    gate_surplus_tolerance: float = Field(
        0.02, ge=0.0, le=1.0, description="Gate: how far below the champion's surplus may be."
    )
    gate_max_deal_rate_drop: float = Field(
        0.02, ge=0.0, le=1.0, description="Gate: how much lower the deal rate may be (a share)."
    )
    gate_interval: int = Field(
        50,
        ge=1,
        description=(
            "Negotiations between candidates: a checkpoint is judged once this many have been "
            "learned from since the last one (judging takes a second or two)."
        ),
    )
    gate_strategies: Annotated[tuple[str, ...], AfterValidator(_known_strategies)] = Field(
        ALL_STRATEGIES,
        min_length=1,
        description=(
            "Seller strategies of the gate's held-out simulated suite, as a JSON list (the "
            "sellers you expect: a suite unlike them rejects candidates that adapt to them)."
        ),
    )
    auto_rollback: bool = Field(
        True, description="Go back to the last known good model when live results degrade."
    )
    rollback_window: int = Field(
        200, ge=20, le=100_000, description="Negotiations the rollback monitor compares."
    )
    train_steps: int = Field(5, ge=0, description="Gradient steps after each negotiation.")
    save_interval: int = Field(10, ge=1, description="Negotiations between checkpoints.")
    keep_checkpoints: int = Field(10, ge=1, description="Checkpoints kept on disk.")
    database_url: str = Field(
        "sqlite:///data/haggler.db",
        description="SQLAlchemy URL of the store: an SQLite file, or postgresql://... to share it.",
    )
    operator_token: str | None = Field(
        None,
        description=(
            "A bearer token registered at start as a token of the operator account `operator` "
            "(created if missing). Kept for deployments of the first version; prefer "
            "`haggler users token` and unset this."
        ),
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 90, description="How long a browser login lasts, in hours."
    )
    cookie_secure: bool = Field(
        False,
        description=(
            "Send the login cookie only over HTTPS (set it behind a TLS proxy; a request that "
            "came over HTTPS gets a secure cookie anyway)."
        ),
    )
    max_body_bytes: int = Field(
        65_536, ge=1024, le=100 * 2**20, description="Largest request body accepted (413 above)."
    )
    rate_limit_per_second: float = Field(
        50.0,
        ge=0.0,
        description=(
            "Requests a second each client (account, or address when signed out) may make on "
            "average; above it, 429 with Retry-After (0: no limit)."
        ),
    )
    rate_limit_burst: int = Field(
        100, ge=1, description="Requests a client may make at once above its average rate."
    )
    max_streams_per_client: int = Field(
        8, ge=1, description="Event streams one client may hold open (429 above)."
    )
    max_streams: int = Field(
        200, ge=1, description="Event streams open at once over all clients (503 above)."
    )
    trusted_hosts: tuple[str, ...] = Field(
        ("localhost", "127.0.0.1", "[::1]"),
        min_length=1,
        description=(
            "Host names the service answers to, as a JSON list (`*.example.com` allowed; "
            "`*` turns the check off); other Host headers get 400."
        ),
    )
    learner: Literal["process", "thread", "external"] = Field(
        "process",
        description=(
            "Where online training runs: a process of its own started by `haggler serve`, a "
            "thread of the serving process, or `external` (you run `haggler learn` yourself: "
            "one learner for several serving processes sharing a PostgreSQL store)."
        ),
    )
    learner_nice: int = Field(
        LEARNER_NICE,
        ge=0,
        le=19,
        description=(
            "How much lower the learner's CPU priority is than the service's (Linux nice): 10 "
            "gives it about a tenth of a busy core beside serving, 0 an equal share."
        ),
    )
    learner_max_delay: float = Field(
        1.0,
        gt=0.0,
        le=60.0,
        description=(
            "Seconds a finished negotiation may wait for weights that learned from it. While "
            "the learner keeps up it trains on each negotiation as the spec says; when training "
            "them one by one would take longer, it merges every waiting negotiation into one "
            "update of larger minibatches, cut off at half of this time."
        ),
    )
    currency: str = Field(
        "EUR",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of the catalogue's prices, and so of every price negotiated.",
    )
    host: str = Field("127.0.0.1", description="Address `haggler serve` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `haggler serve` listens on.")
    replay_anchor_share: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description=(
            "Share of every online minibatch drawn from simulated experience against the "
            "training sellers, replayed against forgetting (0: live experience only)."
        ),
    )
    replay_anchor_negotiations: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Simulated negotiations the learner plays at start for that experience.",
    )
    promotion_warmup: int = Field(
        0,
        ge=0,
        description=(
            "Negotiations learned from before any learned version serves: until then the "
            "starting model serves while the learner trains (a promotion warm-up)."
        ),
    )


def settings_environment(settings: Settings) -> dict[str, str]:
    """`settings` as environment variables, for a child process that must see the same."""
    return {
        # Lists go as JSON, which is how pydantic-settings reads them back.
        name.upper(): json.dumps(list(value)) if isinstance(value, (list, tuple)) else str(value)
        for name, value in settings.model_dump().items()
        if value is not None
    }
