"""Request and response bodies of the HTTP API (pydantic): validation happens here."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from haggler.core.negotiation import DEFAULT_MAX_ROUNDS, MAX_PRICE
from haggler.core.sellers import ALL_STRATEGIES

# Exact money: a decimal with at most two places, positive and finite (NaN/inf are refused).
Price = Annotated[
    Decimal,
    Field(
        gt=0,
        le=Decimal(int(MAX_PRICE)),
        max_digits=12,
        decimal_places=2,
        allow_inf_nan=False,
        description="A unit price: positive, at most 1,000,000,000, at most two decimals "
        '(cents), as a JSON string ("249.90") or number; anything else gets a 422.',
    ),
]


PLAIN_TEXT = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"
"""Text with something other than spaces in it and no control characters (a NUL is refused by
PostgreSQL: without this, a 500 there)."""
MAX_ID = 2**31 - 1
"""Ids are 32-bit integers in every supported database."""


class ProductIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "Pallet jack", "category": "warehouse", "list_price": "399.00"}]
        },
    )

    name: str = Field(min_length=1, max_length=200, pattern=PLAIN_TEXT)
    category: str = Field(min_length=1, max_length=100, pattern=PLAIN_TEXT)
    list_price: Price


class ProductOut(BaseModel):
    id: int
    name: str
    category: str
    list_price: Decimal


class SimulatedSellerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["simulated"]
    strategy: Literal[ALL_STRATEGIES] = "linear"  # type: ignore[valid-type]
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="Fixes the persona's draw.")


class ExternalSellerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["external"]
    asking_price: Price = Field(description="The seller's opening ask per unit.")
    account: str | None = Field(
        None,
        max_length=50,
        pattern=PLAIN_TEXT,
        description=(
            "A seller account to make party to the negotiation: it may then move and read the "
            "seller's view with its own token or login, besides the negotiation's seller token."
        ),
    )


class NegotiationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "product_id": 1,
                    "quantity": 20,
                    "max_unit_price": "270.00",
                    "max_rounds": 10,
                    "seller": {"kind": "simulated", "strategy": "tit_for_tat"},
                },
                {
                    "product_id": 1,
                    "quantity": 20,
                    "max_unit_price": "270.00",
                    "seller": {"kind": "external", "asking_price": "320.00"},
                },
            ]
        },
    )

    product_id: int = Field(ge=1, le=MAX_ID)
    quantity: int = Field(1, ge=1, le=1_000_000)
    max_unit_price: Price = Field(description="The buyer's hard limit; never shown to a seller.")
    max_rounds: int = Field(DEFAULT_MAX_ROUNDS, ge=1, le=100)
    seller: SimulatedSellerIn | ExternalSellerIn = Field(discriminator="kind")


class SellerMoveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"move": "counter", "price": "300.00"}, {"move": "accept"}]
        },
    )

    move: Literal["accept", "counter", "walk_away"]
    price: Price | None = Field(None, description="Required for a counter-offer, else omitted.")
    expected_turns: int | None = Field(
        None,
        ge=1,
        le=1000,
        description=(
            "The transcript's length in the seller's view this move answers. If the "
            "negotiation has moved on since (another move of yours was applied first), the "
            "move is refused with 409 and nothing changes. Send it when more than one "
            "client may move for the seller."
        ),
    )


class TurnOut(BaseModel):
    party: Literal["buyer", "seller"]
    move: Literal["accept", "counter", "walk_away"]
    price: Decimal | None
    round: int


class ResultOut(BaseModel):
    outcome: str
    deal_price: Decimal | None
    savings_per_unit: Decimal
    savings_total: Decimal
    savings_pct: float
    rounds: int


class NegotiationOut(BaseModel):
    """A negotiation as the purchaser sees it (the buyer's limit included)."""

    id: int
    product: ProductOut
    quantity: int
    max_unit_price: Decimal
    max_rounds: int
    seller_kind: str
    seller_strategy: str | None
    status: Literal["open", "finished"]
    to_move: Literal["buyer", "seller"] | None
    transcript: list[TurnOut]
    result: ResultOut | None
    reward: float | None
    model_version: int
    created_at: datetime
    finished_at: datetime | None
    currency: str = Field(description="ISO 4217 code of every price here.")


class SellerViewOut(BaseModel):
    """What an external seller may see of its own negotiation: never the buyer's limit."""

    id: int
    product: ProductOut = Field(description="With the list price this negotiation is about.")
    quantity: int
    currency: str = Field(description="ISO 4217 code of every price here.")
    status: Literal["open", "finished"]
    to_move: Literal["buyer", "seller"] | None
    round: int = Field(
        description="The buyer's move number now: its last move's, 0 before its first."
    )
    max_rounds: int = Field(description="The buyer's moves at most: no deal after the last.")
    rounds_left: int = Field(description="The buyer's moves still to come.")
    buyer_last_move: TurnOut | None = Field(
        description="The agent's last move (None before its first): what the seller answers."
    )
    transcript: list[TurnOut]
    outcome: str | None
    deal_price: Decimal | None


class ExternalStartOut(BaseModel):
    seller_token: str = Field(description="Send as `Authorization: Bearer ...` with every move.")
    negotiation: SellerViewOut


PAGING = {
    "total": "How many negotiations match; at least this many where `total_exact` is false "
    "(a filtered count stops at 1,000).",
    "next_before": "Pass as `before` for the next page (null: this is the last); a cursor costs "
    "the same at any depth, where a large `offset` reads every row it skips.",
}


class NegotiationPage(BaseModel):
    items: list[NegotiationOut]
    total: int = Field(description=PAGING["total"])
    total_exact: bool = True
    limit: int
    offset: int
    next_before: int | None = Field(None, description=PAGING["next_before"])
    currency: str = Field(description="ISO 4217 code of every price here.")


class SellerPage(BaseModel):
    """A seller's negotiations, newest first, in the seller's view."""

    items: list[SellerViewOut]
    total: int = Field(description=PAGING["total"])
    total_exact: bool = True
    limit: int
    offset: int
    next_before: int | None = Field(None, description=PAGING["next_before"])


class Estimate(BaseModel):
    mean: float | None
    ci_low: float | None
    ci_high: float | None


class SummaryOut(BaseModel):
    negotiations: int
    finished: int
    deals: int
    deal_rate: Estimate
    average_reward: Estimate
    savings_total: Decimal
    average_savings_pct: Estimate
    average_rounds: Estimate


class CheckpointOut(BaseModel):
    name: str
    negotiations: int
    saved_at: datetime
    size_bytes: int


class TrainingOut(BaseModel):
    enabled: bool
    epsilon: float
    model_version: int
    replay_buffer_size: int
    negotiations_trained: int
    last_loss: float | None
    last_checkpoint: str | None
    checkpoint_error: str | None
    update_delay_median_s: float | None = Field(
        description="Median seconds from a negotiation's end to serving weights trained on it."
    )
    learner_running: bool | None = Field(
        description="Whether the learner this service started is running (null: none started)."
    )
    learner_ready: bool = Field(
        description="Whether a learner (this service's or another's) has caught up with the "
        "store and is learning from it; false while one starts, which takes seconds."
    )
    learner_pending: int = Field(
        description="Finished negotiations waiting for the learner after its last update."
    )
    learner_delay_s: float | None = Field(
        description="Median seconds from the end of the negotiations of the learner's last "
        "published update to that version (the serving processes follow within 0.1 s)."
    )
    samples_per_negotiation: float | None = Field(
        description="Transitions the last update's gradient steps sampled per negotiation "
        "(TRAIN_STEPS x batch size while the learner keeps up; fewer when it merges)."
    )
    negotiations_merged: int = Field(
        description="Negotiations a learner that had fallen behind merged into larger updates "
        "(LEARNER_MAX_DELAY), since the store began."
    )


class TrainingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


def _no_control_characters(name: str) -> str:
    if any(ord(character) < 32 for character in name):
        raise ValueError("a checkpoint name cannot contain control characters (such as NUL)")
    return name


class RestoreIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"checkpoint": "buyer_agent_n10_20231225_120000.pth"}]},
    )

    checkpoint: Annotated[str, AfterValidator(_no_control_characters)] = Field(
        min_length=1,
        max_length=500,
        description="A checkpoint file name inside CHECKPOINT_DIR.",
    )


class TrainingPointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    negotiations: int = Field(description="Negotiations trained on so far.")
    loss: float | None = Field(description="Mean loss of this update's gradient steps.")
    replay_buffer_size: int
    epsilon: float = Field(description="Exploration rate while these negotiations were played.")
    model_version: int
    checkpoint: str | None
    pending: int = Field(description="Negotiations still waiting for the learner after it.")
    merged: int = Field(
        description="Negotiations merged into this update by a learner that had fallen behind "
        "(0: it trained on each one by one, as the spec says)."
    )
    samples_per_negotiation: float | None = Field(
        description="Transitions its gradient steps sampled, per negotiation taken in."
    )
    delay_s: float | None = Field(
        description="Median seconds from the end of its negotiations to the version it published."
    )


class TrainingHistoryOut(BaseModel):
    points: list[TrainingPointOut] = Field(description="One per learner update, oldest first.")


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    created_at: datetime
    source: Literal["starter", "training", "restore", "rollback"]
    checkpoint: str | None = Field(description="The checkpoint restored, or the candidate's.")
    negotiations: int = Field(description="Negotiations trained on when it was published.")
    status: Literal["promoted", "candidate", "rejected"] = Field(
        description="`promoted`: it served; `candidate`: waiting (in an A/B test); `rejected`."
    )
    reason: str | None = Field(description="Why: the gate's verdict, an A/B test, a rollback.")
    evaluation: dict[str, Any] | None = Field(description="The gate's figures, for candidates.")
    copy_of: int | None = Field(description="For a rollback: the version whose weights it serves.")
    promoted_at: datetime | None


class ABTestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    champion_version: int
    challenger_version: int
    split: float = Field(description="Share of new negotiations the challenger plays.")
    status: Literal["running", "promoted", "rejected", "stopped"]
    started_at: datetime
    ended_at: datetime | None
    decided_by: Literal["rule", "operator", "rollback"] | None
    reason: str | None
    verdict: dict[str, Any] | None = Field(
        description="The stopping rule's last look: per-arm deal rate, reward, savings and "
        "surplus with 95% intervals, the lift and its always-valid p-value."
    )


class ABTestIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"challenger_version": 12, "split": 0.2}]}
    )

    challenger_version: int = Field(ge=1, le=MAX_ID)
    split: float = Field(
        ge=0.05,
        le=0.95,
        description="The challenger's share of new negotiations (0.05-0.95: a thinner arm would "
        "hold every later candidate back for tens of thousands of negotiations).",
    )


class ABDecisionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"decision": "reject", "reason": "too few deals"}]},
    )

    decision: Literal["promote", "reject"]
    reason: str = Field("the operator's decision", min_length=1, max_length=500, pattern=PLAIN_TEXT)


class CandidateEvaluationOut(BaseModel):
    version: int
    champion_version: int
    passed: bool
    reason: str
    figures: dict[str, Any] = Field(
        description="Off-policy estimates on logged negotiations (PDWIS and doubly robust, with "
        "bootstrap intervals and effective sample sizes) and the simulated held-out suite."
    )


class SafetyOut(BaseModel):
    promotion: Literal["immediate", "gated"]
    exploration: Literal["epsilon", "safe"]
    ab_split: float
    auto_rollback: bool
    serving_version: int | None
    known_good_version: int | None = Field(description="What a rollback would go back to.")
    running_test: ABTestOut | None
    promotions: int = Field(description="Candidates that passed and served.")
    rejections: int = Field(description="Candidates the gate or an A/B test turned away.")
    rollbacks: int
    last_rollback: ModelVersionOut | None


class FinishedPointOut(BaseModel):
    id: int
    finished_at: datetime
    outcome: str
    deal: bool
    reward: float | None
    savings_pct: float | None = Field(description="Saving against list price (deals only).")
    model_version: int


class FinishedSeriesOut(BaseModel):
    points: list[FinishedPointOut] = Field(description="Finished negotiations, oldest first.")


class ModelEventOut(BaseModel):
    """A moment the dashboard's charts mark: a version that began to serve other than as an
    update of the learner (a restore, a rollback, a promoted candidate), or an A/B test that
    started or ended."""

    at: datetime
    kind: Literal["restore", "rollback", "promotion", "ab_test_start", "ab_test_end"]
    version: int = Field(
        description="The version that serves from then on; for an A/B test, its challenger."
    )
    checkpoint: str | None = Field(None, description="For a restore: the checkpoint restored.")
    copy_of: int | None = Field(
        None, description="For a rollback: the version whose weights serve again."
    )
    ab_test_id: int | None = None
    champion_version: int | None = Field(
        None, description="For an A/B test: the version the challenger plays against."
    )
    outcome: Literal["promoted", "rejected", "stopped"] | None = Field(
        None, description="For the end of an A/B test: what became of the challenger."
    )
    reason: str | None = Field(None, description="Why, in the words of whoever decided.")
