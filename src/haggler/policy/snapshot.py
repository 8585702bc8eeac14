"""The serving policy: an immutable numpy snapshot of the Q-network's weights, and a move chosen
with it (greedy, or drawn by an exploration policy, with its propensity)."""

from __future__ import annotations

import dataclasses
import io
from typing import NamedTuple

import numpy as np

from haggler.core.features import (
    MOVE_NAMES,
    N_MOVES,
    OBSERVATION_NAMES,
    OBSERVATION_SIZE,
    BuyerMove,
    legal_moves,
    observe,
    to_action,
)
from haggler.core.negotiation import Action, NegotiationState
from haggler.policy.exploration import GREEDY, Exploration, choose_move


class ModelFileError(ValueError):
    """A model file that is missing, unreadable, or not a haggler checkpoint."""


class Decision(NamedTuple):
    move: BuyerMove
    propensity: float
    """Probability with which the behaviour policy took `move` (for off-policy evaluation)."""
    model_version: int = 0
    """Version of the weights that chose the move."""


@dataclasses.dataclass(frozen=True)
class PolicySnapshot:
    """Read-only copy of the online network's weights, evaluated in numpy."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    version: int

    def to_bytes(self) -> bytes:
        """The weights as an .npz archive (plain arrays: loading it runs no code), with the names
        of the observations and moves they were trained on."""
        arrays = {f"weight{i}": w for i, w in enumerate(self.weights)}
        arrays |= {f"bias{i}": b for i, b in enumerate(self.biases)}
        arrays |= {
            "observation_names": np.array(OBSERVATION_NAMES),
            "moves": np.array(MOVE_NAMES),
        }
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @staticmethod
    def from_bytes(data: bytes, version: int) -> PolicySnapshot:
        """The snapshot `to_bytes` wrote, as model `version`; ModelFileError if its weights were
        trained on other observations or moves than this version's."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                layers = sum(name.startswith("weight") for name in archive.files)
                weights = tuple(archive[f"weight{i}"] for i in range(layers))
                biases = tuple(archive[f"bias{i}"] for i in range(layers))
                # Archives written before the names were recorded (up to 2026-12-05) carry
                # none: their shape is all there is to check them by.
                layout = {
                    name: archive[name].tolist()
                    for name in ("observation_names", "moves")
                    if name in archive.files
                }
        except (OSError, KeyError, ValueError) as error:
            raise ModelFileError(
                f"model version {version} has unreadable weights ({error})"
            ) from None
        if (
            not weights
            or weights[0].shape[0] != OBSERVATION_SIZE
            or weights[-1].shape[1] != N_MOVES
            or layout.get("observation_names", list(OBSERVATION_NAMES)) != list(OBSERVATION_NAMES)
            or layout.get("moves", MOVE_NAMES) != MOVE_NAMES
        ):
            raise ModelFileError(f"model version {version} does not fit the observations or moves")
        for array in (*weights, *biases):
            array.setflags(write=False)
        return PolicySnapshot(weights, biases, version)

    def q_values(self, observations: np.ndarray) -> np.ndarray:
        """(B, OBSERVATION_SIZE) or (OBSERVATION_SIZE,) -> (B, N_MOVES) or (N_MOVES,)."""
        hidden = observations
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            hidden = hidden @ weight + bias
            if i < last:
                np.maximum(hidden, 0.0, out=hidden)
        return hidden


def masked_greedy(q_values: np.ndarray, action_mask: np.ndarray) -> np.ndarray:
    """Index of the best legal move per row; works for (N_MOVES,) and (B, N_MOVES)."""
    return np.asarray(np.where(action_mask, q_values, -np.inf).argmax(axis=-1))


def decide(
    snapshot: PolicySnapshot,
    observation: np.ndarray,
    action_mask: np.ndarray,
    *,
    exploration: Exploration = GREEDY,
    rng: np.random.Generator | None = None,
) -> Decision:
    """A legal move chosen with `snapshot`'s Q-values: greedy, or drawn by `exploration` with the
    seeded `rng`, with the probability it had (its propensity)."""
    q_values = snapshot.q_values(observation)
    if not exploration.explores:
        move = BuyerMove(int(masked_greedy(q_values, action_mask)))
        return Decision(move, 1.0, snapshot.version)
    move_index, propensity = choose_move(q_values, action_mask, exploration, rng)
    return Decision(BuyerMove(move_index), propensity, snapshot.version)


class AgentBuyer:
    """A snapshot as a `Buyer` of the game loop: greedy moves from observations."""

    name = "agent"

    def __init__(self, snapshot: PolicySnapshot) -> None:
        self.snapshot = snapshot

    def act(self, state: NegotiationState) -> Action:
        decision = decide(self.snapshot, observe(state), legal_moves(state))
        return to_action(state, decision.move)
