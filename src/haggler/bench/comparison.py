"""The agent against the rules on one family's held-out negotiations: aligned per-negotiation
results, paired comparisons, the type oracle, the exponent chosen on the other families, and the
pooled figures over families (`bench-generalisation`'s statistics)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from haggler.bench.online_stream import Measured, paired
from haggler.core.scenarios import Played
from haggler.policy.baselines import BASELINES, TimeBasedBuyer
from haggler.safety.evaluation import Estimate, mean_ci, proportion_ci

ORACLE = "type_oracle"
CHOSEN_EXPONENT = "exponent_chosen_on_training"
"""The time-dependent buyer whose exponent did best on the training families."""

Results = tuple[np.ndarray, np.ndarray]
"""Normalised surplus and whether a deal was reached, per feasible negotiation."""


def feasible_results(played: Sequence[Played]) -> Results:
    """Surplus and deal of every feasible negotiation of `played`, in order."""
    feasible = [p for p in played if p.feasible]
    surplus = np.array([p.normalised_surplus for p in feasible])
    deals = np.array([p.state.deal_price is not None for p in feasible])
    return surplus, deals


@dataclass(frozen=True)
class HeldOut:
    """Every buyer on one family's held-out negotiations, feasible ones only (aligned arrays)."""

    family: str
    strategies: tuple[str, ...]
    """The seller strategy of each feasible negotiation."""
    surplus: dict[str, np.ndarray]
    """Per buyer, normalised surplus per feasible negotiation."""
    deals: dict[str, np.ndarray]
    """Per buyer, whether each feasible negotiation ended in a deal."""


@dataclass(frozen=True)
class Comparison:
    """The agent against one reference on the same feasible negotiations."""

    agent: Estimate
    reference: str
    reference_surplus: Estimate
    difference: Estimate
    """Paired, agent - reference, per negotiation."""
    p_value: float
    agent_agreement: Estimate
    reference_agreement: Estimate
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent.as_dict(),
            "reference": self.reference,
            "reference_surplus": self.reference_surplus.as_dict(),
            "difference": self.difference.as_dict(),
            "p_value": self.p_value,
            "agent_agreement": self.agent_agreement.as_dict(),
            "reference_agreement": self.reference_agreement.as_dict(),
            "n": self.n,
        }


def compare(agent: Results, reference: Results, name: str) -> Comparison:
    surplus, deals = agent
    ref_surplus, ref_deals = reference
    difference, p_value = paired(Measured(surplus, deals), Measured(ref_surplus, ref_deals))
    return Comparison(
        agent=mean_ci(surplus),
        reference=name,
        reference_surplus=mean_ci(ref_surplus),
        difference=difference,
        p_value=p_value,
        agent_agreement=proportion_ci(int(deals.sum()), len(deals)),
        reference_agreement=proportion_ci(int(ref_deals.sum()), len(ref_deals)),
        n=len(surplus),
    )


def oracle(held_out: HeldOut) -> Results:
    """Per seller strategy, the best rule's results, chosen with hindsight."""
    strategies = np.array(held_out.strategies)
    surplus = np.zeros(len(strategies))
    deals = np.zeros(len(strategies), dtype=bool)
    for strategy in set(held_out.strategies):
        rows = strategies == strategy
        best = max(BASELINES, key=lambda b: float(held_out.surplus[b.name][rows].mean())).name
        surplus[rows], deals[rows] = held_out.surplus[best][rows], held_out.deals[best][rows]
    return surplus, deals


def chosen_exponent(family: str, held_out: dict[str, HeldOut]) -> str:
    """The time-dependent buyer with the best mean over the families other than `family`."""
    grid = [b.name for b in BASELINES if isinstance(b, TimeBasedBuyer)]
    others = [h for f, h in held_out.items() if f != family]
    return max(
        grid, key=lambda name: statistics.fmean(float(h.surplus[name].mean()) for h in others)
    )


def pooled(
    held_out: dict[str, HeldOut], agents: dict[str, Results], name: str
) -> tuple[Results, Results]:
    """The agent and the reference `name` over every family's negotiations, concatenated."""
    families = list(held_out)

    def reference(family: str) -> Results:
        h = held_out[family]
        if name == ORACLE:
            return oracle(h)
        if name == CHOSEN_EXPONENT:
            chosen = chosen_exponent(family, held_out)
            return h.surplus[chosen], h.deals[chosen]
        return h.surplus[name], h.deals[name]

    agent = tuple(np.concatenate([agents[f][i] for f in families]) for i in (0, 1))
    ref = tuple(np.concatenate([reference(f)[i] for f in families]) for i in (0, 1))
    return agent, ref  # type: ignore[return-value]


def best_rule(held_out: dict[str, HeldOut]) -> str:
    """The single rule with the best mean over every held-out negotiation, with hindsight."""
    return max(
        BASELINES,
        key=lambda b: float(np.concatenate([h.surplus[b.name] for h in held_out.values()]).mean()),
    ).name
