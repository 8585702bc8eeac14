"""The buyer agent: a double deep Q-network over the discrete moves of `features.BuyerMove`.

The replay buffer is TorchRL's; the update is written out like CleanRL's
DQN with torch's Huber loss (TorchRL's `DQNLoss` computes the same but took 2.8 ms a step against
1.3 ms here, which halves the updates a 3-minute pretraining can afford). Acting reads an
immutable numpy snapshot of the online network (`policy.snapshot`), so a decision costs a few
microseconds and never waits for, or sees half of, a gradient step.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from haggler.config import DQNConfig
from haggler.core.features import (
    MOVE_NAMES,
    N_MOVES,
    OBSERVATION_NAMES,
    OBSERVATION_SIZE,
)
from haggler.core.transitions import Transitions
from haggler.files import atomic_write
from haggler.policy.exploration import GREEDY, Exploration
from haggler.policy.snapshot import Decision, ModelFileError, PolicySnapshot, decide

# TorchRL logs an INFO line on every buffer's first write, which would end up in CLI output.
logging.getLogger("torchrl").setLevel(logging.WARNING)

CHECKPOINT_FORMAT = "haggler-buyer-agent"
CHECKPOINT_VERSION = 1


class Batch(NamedTuple):
    """A minibatch for one gradient step, as tensors with a leading batch dimension B."""

    observations: torch.Tensor  # (B, OBSERVATION_SIZE) float32
    moves: torch.Tensor  # (B,) int64
    rewards: torch.Tensor  # (B,) float32, clipped
    next_observations: torch.Tensor  # (B, OBSERVATION_SIZE) float32
    next_masks: torch.Tensor  # (B, N_MOVES) bool
    not_terminated: torch.Tensor  # (B,) float32: 0 where the negotiation ended


def snapshot_of(network: torch.nn.Module, version: int) -> PolicySnapshot:
    """A read-only numpy copy of `network`'s weights, to act with as model `version`."""
    linears = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        weights = tuple(m.weight.detach().numpy().T.copy() for m in linears)
        biases = tuple(m.bias.detach().numpy().copy() for m in linears)
    for array in (*weights, *biases):
        array.setflags(write=False)
    return PolicySnapshot(weights, biases, version)


def _q_network(hidden_sizes: tuple[int, ...]) -> torch.nn.Sequential:
    """Observation (B, OBSERVATION_SIZE) -> Q-value of every move (B, N_MOVES)."""
    layers: list[torch.nn.Module] = []
    width = OBSERVATION_SIZE
    for hidden in hidden_sizes:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    layers.append(torch.nn.Linear(width, N_MOVES))
    return torch.nn.Sequential(*layers)


class BuyerAgent:
    """The DQN buyer: act on an observation, learn from transitions, save and load."""

    def __init__(self, config: DQNConfig | None = None) -> None:
        self.config = config or DQNConfig()
        with torch.random.fork_rng():  # seed the initial weights without touching global state
            torch.manual_seed(self.config.seed)
            self.q_network = _q_network(self.config.hidden_sizes)
        self.target_network = _q_network(self.config.hidden_sizes)
        self.target_network.load_state_dict(self.q_network.state_dict())
        # The fused CPU kernel: measured 1.09 against 1.29 ms a gradient step here.
        self.optimizer = torch.optim.Adam(
            self.q_network.parameters(), lr=self.config.learning_rate, fused=True
        )
        self.replay_buffer = self._new_replay_buffer()
        self.anchor_buffer: TensorDictReplayBuffer | None = None
        """Simulated experience replayed beside the live one, against forgetting (`anchor`)."""
        self.anchor_share = 0.0
        """Share of every minibatch drawn from `anchor_buffer`."""
        self.gradient_steps = 0
        self.model_version = 0
        """Version of the weights being served; saved with the model, so it survives restarts."""
        self.latest_version = 0
        """Highest version ever published here: a new one is always above it, even after a
        rollback to an older checkpoint, so a version number never names two sets of weights."""
        self.metadata: dict[str, Any] = {}
        self.snapshot = snapshot_of(self.q_network, version=0)

    def _new_replay_buffer(self) -> TensorDictReplayBuffer:
        capacity = self.config.buffer_size
        generator = torch.Generator().manual_seed(self.config.seed)
        # No batch size here: `train_steps` asks for all its steps' minibatches in one draw.
        buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(capacity))
        buffer.set_rng(generator)
        return buffer

    # -- acting -----------------------------------------------------------------------------

    def q_values(self, observations: np.ndarray) -> np.ndarray:
        return self.snapshot.q_values(observations)

    def act(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray,
        *,
        exploration: Exploration = GREEDY,
        rng: np.random.Generator | None = None,
        snapshot: PolicySnapshot | None = None,
    ) -> Decision:
        """Choose a legal move with `snapshot` (default: the one serving now): greedy, or drawn by
        `exploration` with the seeded `rng`."""
        # Read once: the learner may publish a new snapshot meanwhile.
        return decide(
            snapshot or self.snapshot, observation, action_mask, exploration=exploration, rng=rng
        )

    # -- learning ---------------------------------------------------------------------------

    def anchor(self, batch: Transitions, share: float) -> None:
        """Replay `batch` (experience against the simulated sellers) as `share` of every
        minibatch from now on, whatever the live buffer holds: learning online from one kind of
        seller must not forget the others (measured: 3,000 negotiations of one unseen family
        without it took the greedy surplus on the training families from 0.358 to 0.318)."""
        if not 0.0 <= share < 1.0:
            raise ValueError(f"the anchor's share must be in [0, 1), got {share}")
        self.anchor_buffer = self._new_replay_buffer()
        self.anchor_buffer.extend(self._tensordict(batch))
        self.anchor_share = share

    def add_transitions(self, batch: Transitions) -> None:
        if len(batch.move) == 0:
            return
        self.replay_buffer.extend(self._tensordict(batch))

    def _tensordict(self, batch: Transitions) -> TensorDict:
        size = len(batch.move)
        rewards = np.clip(batch.reward, -1.0, 1.0)  # reward clipping (Mnih et al. 2015)
        terminated = torch.as_tensor(batch.terminated, dtype=torch.bool).reshape(size, 1)
        return TensorDict(
            {
                "observation": torch.as_tensor(batch.observation, dtype=torch.float32),
                "action_mask": torch.as_tensor(batch.action_mask, dtype=torch.bool),
                "action": torch.as_tensor(batch.move, dtype=torch.int64),
                "next": {
                    "observation": torch.as_tensor(batch.next_observation, dtype=torch.float32),
                    "action_mask": torch.as_tensor(batch.next_action_mask, dtype=torch.bool),
                    "reward": torch.as_tensor(rewards, dtype=torch.float32).reshape(size, 1),
                    "terminated": terminated,
                    "done": terminated.clone(),
                },
            },
            batch_size=[size],
        )

    @property
    def buffer_size(self) -> int:
        return len(self.replay_buffer)

    def train_steps(self, steps: int, *, batch_size: int | None = None) -> float:
        """Run `steps` gradient steps from the replay buffer, each on a minibatch of
        `batch_size` transitions (default: the config's); return the mean loss (nan if none)."""
        if steps <= 0 or len(self.replay_buffer) == 0:
            return float("nan")
        # One draw of steps x batch_size transitions, split into the steps' minibatches: the same
        # uniform sampling with replacement, at a fifth of the buffer's per-call overhead.
        size = batch_size or self.config.batch_size
        anchored = 0
        if self.anchor_buffer is not None and len(self.anchor_buffer):
            anchored = round(self.anchor_share * size)
        live = self.replay_buffer.sample((size - anchored) * steps)
        if anchored:  # each minibatch: its live part, then its anchor part
            parts = [live.reshape(steps, size - anchored)]
            parts.append(self.anchor_buffer.sample(anchored * steps).reshape(steps, anchored))  # type: ignore[union-attr]
            joined = cast(TensorDict, torch.cat(parts, dim=1))
            sample = joined.reshape(steps * size)
        else:
            sample = live
        batches = Batch(
            observations=sample["observation"],
            moves=sample["action"],
            rewards=sample["next", "reward"].squeeze(-1),
            next_observations=sample["next", "observation"],
            next_masks=sample["next", "action_mask"],
            not_terminated=1.0 - sample["next", "terminated"].squeeze(-1).float(),
        )
        losses = [
            self._gradient_step(Batch(*(part[i * size : (i + 1) * size] for part in batches)))
            for i in range(steps)
        ]
        self.publish()
        return float(np.mean(losses))

    def set_learning_rate(self, learning_rate: float) -> None:
        """Change Adam's step size from the next gradient step on (online learning runs slower
        than pretraining: measured, 1e-4 online recovered ~88% of a shift's loss by 2,000
        negotiations where the pretraining rate recovered 42-67%)."""
        if not learning_rate > 0.0:
            raise ValueError(f"the learning rate must be positive, got {learning_rate}")
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate

    def _gradient_step(self, batch: Batch) -> float:
        """One double-DQN update (van Hasselt et al. 2016) with Huber loss and clipped gradients."""
        with torch.no_grad():
            # Double-Q: the online network picks the next move, the target network values it.
            next_q_online = self.q_network(batch.next_observations).masked_fill(
                ~batch.next_masks, -torch.inf
            )
            next_moves = next_q_online.argmax(dim=1, keepdim=True)  # (B, 1)
            target_max = (
                self.target_network(batch.next_observations).gather(1, next_moves).squeeze(1)
            )  # (B,)
            td_target = batch.rewards + self.config.gamma * target_max * batch.not_terminated

        q_values = self.q_network(batch.observations).gather(1, batch.moves.unsqueeze(1)).squeeze(1)
        loss = F.smooth_l1_loss(q_values, td_target)  # Huber

        self.optimizer.zero_grad()
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(self.q_network.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.gradient_steps += 1
        if self.gradient_steps % self.config.target_update_interval == 0:
            self.target_network.load_state_dict(self.q_network.state_dict())
        return float(loss.item())

    def publish(self) -> None:
        """Swap in a fresh snapshot of the online network for acting, as a new model version."""
        self.latest_version = max(self.latest_version, self.model_version) + 1
        self.model_version = self.latest_version
        self.snapshot = snapshot_of(self.q_network, version=self.model_version)

    def serve(self, snapshot: PolicySnapshot) -> None:
        """Act with `snapshot` from now on (published elsewhere, for example by the learner)."""
        self.snapshot = snapshot
        self.model_version = snapshot.version
        self.latest_version = max(self.latest_version, snapshot.version)

    def adopt(self, snapshot: PolicySnapshot) -> None:
        """Learn on from `snapshot`'s weights (online and target network) and act with it."""
        linears = [m for m in self.q_network.modules() if isinstance(m, torch.nn.Linear)]
        if [w.shape for w in snapshot.weights] != [tuple(m.weight.shape[::-1]) for m in linears]:
            raise ModelFileError(f"model version {snapshot.version} has another network shape")
        with torch.no_grad():
            for layer, weight, bias in zip(linears, snapshot.weights, snapshot.biases, strict=True):
                layer.weight.copy_(torch.from_numpy(weight.T.copy()))
                layer.bias.copy_(torch.from_numpy(bias.copy()))
        self.target_network.load_state_dict(self.q_network.state_dict())
        self.serve(snapshot)

    # -- checkpoints ------------------------------------------------------------------------

    def save_model(self, path: str | Path, **metadata: Any) -> Path:
        """Write weights, optimiser state and metadata atomically (temp file, fsync, rename)."""
        path = Path(path)
        self.metadata.update(metadata)
        self.metadata["model_version"] = self.model_version
        self.metadata["latest_version"] = max(self.latest_version, self.model_version)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "torch_version": str(torch.__version__),
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": dataclasses.asdict(self.config),
            "observation_names": list(OBSERVATION_NAMES),
            "moves": list(MOVE_NAMES),
            "gradient_steps": self.gradient_steps,
            "metadata": dict(self.metadata),
            "q_network": self.q_network.state_dict(),
            "target_network": self.target_network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write(path, buffer.getvalue())
        return path

    def load_model(self, path: str | Path) -> None:
        """Restore the weights, optimiser state and metadata saved by `save_model` in place."""
        payload = read_checkpoint(path)
        stored = _stored_config(path, payload)
        if stored.hidden_sizes != self.config.hidden_sizes:
            raise ModelFileError(
                f"{path}: network has hidden sizes {stored.hidden_sizes}, "
                f"this agent {self.config.hidden_sizes}; use BuyerAgent.from_file"
            )
        try:
            # Everything is checked on scratch copies first: a refused file changes nothing.
            q_network = _q_network(stored.hidden_sizes)
            q_network.load_state_dict(payload["q_network"])
            _q_network(stored.hidden_sizes).load_state_dict(payload["target_network"])
            optimizer = torch.optim.Adam(q_network.parameters())
            optimizer.load_state_dict(payload["optimizer"])
            gradient_steps = int(payload["gradient_steps"])
            metadata = dict(payload["metadata"])
            version = int(metadata.get("model_version", 1))
            latest = int(metadata.get("latest_version", version))
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ModelFileError(f"{path} is a damaged checkpoint ({error})") from None
        self.q_network.load_state_dict(payload["q_network"])
        self.target_network.load_state_dict(payload["target_network"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.gradient_steps, self.metadata = gradient_steps, metadata
        self.model_version = version
        self.latest_version = max(self.latest_version, latest)
        self.snapshot = snapshot_of(self.q_network, version=self.model_version)

    @classmethod
    def from_file(cls, path: str | Path) -> BuyerAgent:
        """A new agent built from the configuration and weights stored in `path`."""
        agent = cls(_stored_config(path, read_checkpoint(path)))
        agent.load_model(path)
        return agent


def _stored_config(path: str | Path, payload: dict[str, Any]) -> DQNConfig:
    """The DQNConfig saved in a checkpoint; fields this version does not know are ignored."""
    known = {f.name for f in dataclasses.fields(DQNConfig)}
    try:
        raw = {key: value for key, value in dict(payload["config"]).items() if key in known}
        raw["hidden_sizes"] = tuple(int(width) for width in raw["hidden_sizes"])
        return DQNConfig(**raw)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path} has no usable network configuration ({error})") from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True` and check that it is a haggler buyer agent."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise ModelFileError(
            f"{path} is not a readable model file ({type(error).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path} is not a haggler buyer-agent checkpoint")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise ModelFileError(
            f"{path} has checkpoint format {payload.get('format_version')}, "
            f"this version reads {CHECKPOINT_VERSION}"
        )
    if (
        payload.get("observation_names") != list(OBSERVATION_NAMES)
        or payload.get("moves") != MOVE_NAMES
    ):
        raise ModelFileError(
            f"{path} was trained on other observations or moves (an older version of haggler): "
            "train a new one (`haggler train`) or install the starter model "
            "(`haggler starter-model`)"
        )
    return payload
