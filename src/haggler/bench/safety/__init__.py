"""The safety benchmarks of online learning: a population shift, and a poisoning stream.

Both stream simulated negotiations through `online_stream.OnlineStream`, which mirrors the
service, in `immediate` promotion (the learner's every update serves at once) or `gated` (a
candidate serves only if `promotion.judge` passes it against the champion).

- `shift_benchmark` (`shift`): pretrained on population A, the agent is streamed sellers of
  population B, where it clearly loses; how much of the lost surplus the served agent wins back.
- `poisoning_benchmark` (`poisoning`): a model pretrained on the training sellers is streamed
  sellers that teach it to accept a high first ask; its surplus on the standard held-out suite is
  watched in both promotion modes.

Each benchmark takes one frozen config (`ShiftConfig`, `PoisoningConfig`, sharing
`StreamBenchConfig`). Pretraining and streams run side by side in worker processes (`jobs`); each
benchmark returns a `BenchReport` and writes its figures and plot (`report`).
"""

from haggler.bench.safety.jobs import BENCH_SAVE_INTERVAL, StreamBenchConfig
from haggler.bench.safety.poisoning import (
    POISONERS,
    POISONING_GATE,
    PoisoningConfig,
    poisoning_benchmark,
)
from haggler.bench.safety.report import BenchReport
from haggler.bench.safety.shift import (
    POPULATION_A,
    POPULATION_B,
    ShiftConfig,
    shift_benchmark,
    shift_gate,
)

__all__ = [
    "BENCH_SAVE_INTERVAL",
    "POISONERS",
    "POISONING_GATE",
    "POPULATION_A",
    "POPULATION_B",
    "BenchReport",
    "PoisoningConfig",
    "ShiftConfig",
    "StreamBenchConfig",
    "poisoning_benchmark",
    "shift_benchmark",
    "shift_gate",
]
