"""`haggler bench-generalisation`: how the agent does against seller families it never trained on.

For every training seed and every seller family, a model is pretrained on all the other families
(leave one family out) and played on fresh negotiations of the family it never saw, beside every
rule-based buyer on the very same negotiations. Reported per family and pooled over families:
the agent, the best single rule chosen with hindsight, the time-dependent buyer whose exponent
was best on the training families (chosen without hindsight) and the type oracle (the best rule
per seller strategy, with hindsight), with 95% confidence intervals and paired tests per seed.

Then, from the models that never saw the starter's held-out family (the starter's own recipe):
how well a seller can read the buyer's limit off its first offers, and what a seller that
exploits that earns; the online stream (3,000 negotiations of a family the start model never saw,
the starter's held-out family by default, with training on at the service's default settings:
live surplus against the frozen model's, and the greedy model after the stream on fresh
negotiations of that family, beside its best rule, and of the training families); and
the starter recipe over more seeds, each on `haggler evaluate`'s held-out evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haggler.bench.comparison import (
    CHOSEN_EXPONENT,
    ORACLE,
    Comparison,
    HeldOut,
    Results,
    best_rule,
    chosen_exponent,
    compare,
    feasible_results,
    oracle,
    pooled,
)
from haggler.bench.limit_inference import (
    LimitInferenceConfig,
    LimitInferenceResult,
    format_limit_inference,
    limit_inference,
)
from haggler.bench.online_stream import (
    Measured,
    OnlineConfig,
    StreamRun,
    measure,
    paired,
    suite_of,
)
from haggler.bench.safety.jobs import (
    PretrainJob,
    StreamJob,
    map_jobs,
    pretrain_all,
    run_stream_job,
)
from haggler.config import DQNConfig, Settings
from haggler.core.scenarios import EVALUATION_STREAM, Scenario, play, scenario_rng
from haggler.core.scenarios import scenario_suite as draw_suite
from haggler.core.sellers import FAMILIES, HELD_OUT_FAMILY, strategies_without
from haggler.learning.dqn import BuyerAgent
from haggler.learning.pretraining import STARTER_ENV_STEPS
from haggler.policy.baselines import BASELINES
from haggler.policy.exploration import Exploration
from haggler.policy.snapshot import AgentBuyer
from haggler.safety.evaluation import (
    Estimate,
    evaluate,
    evaluation_suites,
    mean_ci,
)

AGENT = "agent"


@dataclass(frozen=True)
class GeneralisationConfig:
    """What `bench-generalisation` trains, plays and streams."""

    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds: one model per seed and left-out family."""
    families: tuple[str, ...] = tuple(FAMILIES)
    """The families left out in turn."""
    env_steps: int = STARTER_ENV_STEPS
    """Pretraining budget of every model, in environment steps (the starter's)."""
    episodes: int = 1000
    """Held-out negotiations per family (the same for every seed and buyer)."""
    suite_seed: int = 1
    """Seeds the held-out negotiations (evaluation stream: never trained on)."""
    stream_negotiations: int = 3000
    """Negotiations of the online stream per seed (0: no stream)."""
    stream_families: tuple[str, ...] = (HELD_OUT_FAMILY,)
    """The families streamed, one at a time: each stream's sellers come from one family, and its
    start model never saw that family."""
    measure_size: int = 1000
    """Fresh negotiations the models before and after the stream are compared on."""
    limit_episodes: int = 2000
    """Negotiations the limit-inferring seller learns from and is tested on (0: none)."""
    starter_seeds: int = 5
    """Seeds of the starter recipe evaluated on `haggler evaluate`'s suites (0: none)."""
    jobs: int = 2
    """Worker processes for training and streaming."""
    cache_dir: Path = Path("models/bench/generalisation")
    """Pretrained models are cached here, keyed by everything that shapes them."""
    dqn: DQNConfig = field(default_factory=DQNConfig)


# -- one held-out family, every buyer ---------------------------------------------------------


def _held_out_suite(family: str, config: GeneralisationConfig) -> list[Scenario]:
    key = int(scenario_rng(EVALUATION_STREAM, config.suite_seed).integers(2**63))
    index = list(FAMILIES).index(family)
    return draw_suite(config.episodes, key + 100 + index, FAMILIES[family])


def baselines_on(family: str, config: GeneralisationConfig) -> HeldOut:
    """Every rule-based buyer on `family`'s held-out negotiations."""
    suite = _held_out_suite(family, config)
    surplus, deals = {}, {}
    for buyer in BASELINES:
        played = [play(scenario, buyer) for scenario in suite]
        surplus[buyer.name], deals[buyer.name] = feasible_results(played)
    strategies = tuple(p.scenario.strategy for p in played if p.feasible)
    return HeldOut(family, strategies, surplus, deals)


def agent_on(model: Path, family: str, config: GeneralisationConfig) -> Results:
    """The model's surplus and deals on `family`'s held-out negotiations."""
    buyer = AgentBuyer(BuyerAgent.from_file(model).snapshot)
    return feasible_results([play(s, buyer) for s in _held_out_suite(family, config)])


@dataclass(frozen=True)
class FamilyReport:
    family: str
    seed: int
    against: dict[str, Comparison]
    """Against the family's best rule, the exponent chosen on training, the type oracle."""


# -- the whole benchmark -----------------------------------------------------------------------


@dataclass
class GeneralisationReport:
    config: GeneralisationConfig
    best_rule: str
    families: list[FamilyReport]
    overall: dict[int, dict[str, Comparison]]
    """Per seed, pooled over families: against the best rule, the chosen exponent, the oracle."""
    limit: dict[int, LimitInferenceResult]
    stream: list[dict[str, Any]]
    starter: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seeds": list(self.config.seeds),
            "env_steps": self.config.env_steps,
            "episodes_per_family": self.config.episodes,
            "best_rule": self.best_rule,
            "families": [
                {
                    "family": r.family,
                    "seed": r.seed,
                    "against": {k: c.as_dict() for k, c in r.against.items()},
                }
                for r in self.families
            ],
            "overall": {
                str(seed): {k: c.as_dict() for k, c in against.items()}
                for seed, against in self.overall.items()
            },
            "limit_inference": {str(seed): result.as_dict() for seed, result in self.limit.items()},
            "online_stream": self.stream,
            "starter_seeds": self.starter,
        }


def _models(
    config: GeneralisationConfig, log: Callable[[str], None]
) -> dict[tuple[str, int], Path]:
    """Every (left-out family, seed) model, trained in `config.jobs` processes or cached."""
    wanted = [(family, seed) for seed in config.seeds for family in config.families]
    if config.limit_episodes:  # the starter's recipe: its held-out family left out
        wanted += [(HELD_OUT_FAMILY, seed) for seed in config.seeds]
    if config.stream_negotiations:
        wanted += [(family, seed) for family in config.stream_families for seed in config.seeds]
    wanted += [(HELD_OUT_FAMILY, seed) for seed in range(config.starter_seeds)]
    keys = list(dict.fromkeys(wanted))
    jobs: list[PretrainJob] = [
        (
            strategies_without(family),
            seed,
            config.env_steps,
            config.cache_dir,
            config.dqn,
            f"without_{family}",
        )
        for family, seed in keys
    ]
    log(f"Pretraining {len(jobs)} models ({config.env_steps:,} environment steps each) ...")
    paths = pretrain_all(jobs, config.jobs)
    return dict(zip(keys, paths, strict=True))


def online_config(settings: Settings) -> OnlineConfig:
    """The service's online learning at `settings` (its defaults: what a purchaser gets)."""
    return OnlineConfig(
        promotion=settings.promotion,
        exploration=Exploration(
            settings.exploration, settings.epsilon, settings.exploration_temperature
        ),
        train_steps=settings.train_steps,
        learning_rate=settings.online_learning_rate,
        save_interval=settings.gate_interval,
        warmup=settings.promotion_warmup,
        anchor_share=settings.replay_anchor_share,
        anchor_negotiations=settings.replay_anchor_negotiations,
    )


def _stream_summary(
    family: str,
    run: StreamRun,
    rule: tuple[str, Measured],
    training_before: Measured,
    training_after: Measured,
) -> dict[str, Any]:
    live_minus_frozen = mean_ci(run.live - run.frozen_live)
    first, last = run.live[:500], run.live[-500:]
    after_vs_before, p_value = paired(run.final, run.start)
    rule_name, rule_measured = rule
    after_vs_rule, rule_p = paired(run.final, rule_measured)
    before_vs_rule, _ = paired(run.start, rule_measured)
    training_diff, training_p = paired(training_after, training_before)
    return {
        "family": family,
        "seed": run.seed,
        "negotiations": len(run.live),
        "live": mean_ci(run.live).as_dict(),
        "frozen_live": mean_ci(run.frozen_live).as_dict(),
        "live_minus_frozen": live_minus_frozen.as_dict(),
        "first_500": mean_ci(first).as_dict(),
        "last_500": mean_ci(last).as_dict(),
        "greedy_after_minus_before": after_vs_before.as_dict(),
        "greedy_after_minus_before_p": p_value,
        "best_rule": rule_name,
        "best_rule_surplus": rule_measured.mean,
        "greedy_before_minus_best_rule": before_vs_rule.as_dict(),
        "greedy_after_minus_best_rule": after_vs_rule.as_dict(),
        "greedy_after_minus_best_rule_p": rule_p,
        "training_families_after_minus_before": training_diff.as_dict(),
        "training_families_p": training_p,
        "training_families_before": training_before.mean,
        "training_families_after": training_after.mean,
        "promotions": run.points[-1].promotions if run.points else 0,
        "seconds": round(run.seconds, 1),
    }


def run_generalisation(
    config: GeneralisationConfig, log: Callable[[str], None] = print
) -> GeneralisationReport:
    if len(config.families) < 2:  # the exponent is chosen on the families not held out
        raise ValueError("leaving one family out needs at least two families")
    models = _models(config, log)
    log("Playing every rule on every family's held-out negotiations ...")
    held_out = {family: baselines_on(family, config) for family in config.families}
    rule = best_rule(held_out)
    families: list[FamilyReport] = []
    overall: dict[int, dict[str, Comparison]] = {}
    for seed in config.seeds:
        agents = {f: agent_on(models[(f, seed)], f, config) for f in config.families}
        for family, h in held_out.items():
            family_best = _family_best_rule(h)
            chosen = chosen_exponent(family, held_out)
            families.append(
                FamilyReport(
                    family,
                    seed,
                    {
                        "best_rule_of_family": compare(
                            agents[family],
                            (h.surplus[family_best], h.deals[family_best]),
                            family_best,
                        ),
                        CHOSEN_EXPONENT: compare(
                            agents[family], (h.surplus[chosen], h.deals[chosen]), chosen
                        ),
                        ORACLE: compare(agents[family], oracle(h), ORACLE),
                    },
                )
            )
        overall[seed] = {
            name: compare(*pooled(held_out, agents, name), name)
            for name in (rule, CHOSEN_EXPONENT, ORACLE)
        }
        log(f"seed {seed}: {overall[seed][rule].difference} vs {rule}")

    limit: dict[int, LimitInferenceResult] = {}
    if config.limit_episodes:
        for seed in config.seeds:
            model = models[(HELD_OUT_FAMILY, seed)]
            result = limit_inference(
                AgentBuyer(BuyerAgent.from_file(model).snapshot),
                next(b for b in BASELINES if b.name == rule),
                LimitInferenceConfig(episodes=config.limit_episodes, seed=seed),
            )
            limit[seed] = result
            log(f"seed {seed}: " + format_limit_inference(result))

    stream: list[dict[str, Any]] = []
    if config.stream_negotiations:
        best = {
            family: _family_best_rule(held_out.get(family) or baselines_on(family, config))
            for family in config.stream_families
        }
        stream = _streams(config, models, best, log)

    starter: list[dict[str, Any]] = []
    for seed in range(config.starter_seeds):
        buyer = AgentBuyer(BuyerAgent.from_file(models[(HELD_OUT_FAMILY, seed)]).snapshot)
        row: dict[str, Any] = {"seed": seed}
        for name, suite in evaluation_suites(config.episodes, config.suite_seed).items():
            evaluation = evaluate(buyer, BASELINES, suite)
            row[name] = {
                "agent": evaluation.reports[AGENT].normalised_surplus.as_dict(),
                "best_baseline": evaluation.best_baseline,
                "best_baseline_surplus": evaluation.reports[
                    evaluation.best_baseline
                ].normalised_surplus.as_dict(),
                "difference": evaluation.agent_vs_best_baseline.as_dict(),
            }
        starter.append(row)
        log(f"starter seed {seed}: {row['main']['agent']} / {row['held_out']['agent']}")
    return GeneralisationReport(config, rule, families, overall, limit, stream, starter)


def _streams(
    config: GeneralisationConfig,
    models: dict[tuple[str, int], Path],
    family_best: dict[str, str],
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Each stream family and seed: online learning from the model that never saw the family;
    the greedy models before and after it beside `family_best[family]`, the family's best rule on
    the held-out evaluation, on the same fresh negotiations."""
    online = online_config(Settings(_env_file=None))
    keys = [(family, seed) for family in config.stream_families for seed in config.seeds]
    jobs = [
        StreamJob(
            start_model=models[(family, seed)],
            stream=FAMILIES[family],
            negotiations=config.stream_negotiations,
            held_out=FAMILIES[family],
            held_out_size=config.measure_size,
            held_out_key=_stream_measure_key(seed),
            config=online,
            seed=seed,
            measure_every=config.stream_negotiations,
            mode="default",
            verbose=False,
        )
        for family, seed in keys
    ]
    log(
        f"Streaming {config.stream_negotiations:,} negotiations per seed at the default "
        f"settings, against {', '.join(config.stream_families)} ..."
    )
    runs = map_jobs(run_stream_job, jobs, config.jobs)
    summaries = []
    for (family, seed), run in zip(keys, runs, strict=True):
        training = suite_of(strategies_without(family), config.measure_size, 2_000)
        before = measure(run.start_snapshot, training)
        after = measure(run.final_snapshot, training)
        fresh = suite_of(FAMILIES[family], config.measure_size, _stream_measure_key(seed))
        rule = _rule_on(family_best[family], fresh)
        summaries.append(_stream_summary(family, run, rule, before, after))
        log(f"stream {family} seed {seed}: live - frozen {mean_ci(run.live - run.frozen_live)}")
    return summaries


def _stream_measure_key(seed: int) -> int:
    """The fresh negotiations the models before and after seed `seed`'s stream are played on."""
    return 1_000 + seed


def _rule_on(name: str, suite: list[Scenario]) -> tuple[str, Measured]:
    """Rule `name` played on `suite`: surplus and deal per feasible scenario."""
    buyer = next(b for b in BASELINES if b.name == name)
    return name, Measured(*feasible_results([play(s, buyer) for s in suite]))


def _family_best_rule(held_out: HeldOut) -> str:
    """The rule with the best mean surplus on one family's held-out negotiations (hindsight)."""
    return max(BASELINES, key=lambda b: float(held_out.surplus[b.name].mean())).name


# -- the report ----------------------------------------------------------------------------------


def _cell(estimate: Estimate) -> str:
    return f"{estimate.mean:+.3f} [{estimate.ci_low:+.3f}, {estimate.ci_high:+.3f}]"


def format_report(report: GeneralisationReport) -> str:
    """Plain-text tables: per family and seed, pooled per seed, then limit, stream, starter."""
    lines = [
        f"Leave one family out: {len(report.config.families)} families x "
        f"{len(report.config.seeds)} seeds, {report.config.env_steps:,} environment steps per "
        f"model, {report.config.episodes} held-out negotiations per family (feasible ones count).",
        "",
        f"{'held-out family':16s} {'seed':>4s} {'agent':>6s} {'agree':>6s}  "
        f"{'family best rule':28s} {'agent - it [95% CI]':26s} {'oracle':>6s} "
        f"{'agent - oracle':>15s}",
    ]
    for r in report.families:
        best, oracle = r.against["best_rule_of_family"], r.against[ORACLE]
        lines.append(
            f"{r.family:16s} {r.seed:4d} {best.agent.mean:6.3f} {best.agent_agreement.mean:6.3f}  "
            f"{best.reference[:20]:20s} {best.reference_surplus.mean:6.3f}  "
            f"{_cell(best.difference):26s} {oracle.reference_surplus.mean:6.3f} "
            f"{oracle.difference.mean:+15.3f}"
        )
    lines += [
        "",
        f"Pooled over the held-out families (best single rule with hindsight: {report.best_rule}):",
    ]
    for seed, against in report.overall.items():
        for name, c in against.items():
            lines.append(
                f"  seed {seed}: agent {c.agent} agreement {c.agent_agreement.mean:.3f} | "
                f"{name} {c.reference_surplus.mean:.3f} agreement "
                f"{c.reference_agreement.mean:.3f} | difference {_cell(c.difference)} "
                f"p = {c.p_value:.2g}, n = {c.n}"
            )
    for seed, result in report.limit.items():
        lines += ["", f"Starter-recipe model of seed {seed}:", format_limit_inference(result)]
    lines.append("")
    for s in report.stream:
        lines += [
            f"Online stream against {s['family']}, seed {s['seed']} ({s['negotiations']} "
            f"negotiations): live - frozen {_cell(Estimate(**s['live_minus_frozen']))}; first "
            f"500 {s['first_500']['mean']:.3f}, last 500 {s['last_500']['mean']:.3f}; greedy "
            f"after - before {_cell(Estimate(**s['greedy_after_minus_before']))}; training "
            f"families {s['training_families_before']:.3f} -> {s['training_families_after']:.3f}",
            f"  greedy before - {s['best_rule']} ({s['best_rule_surplus']:.3f}) "
            f"{_cell(Estimate(**s['greedy_before_minus_best_rule']))}, after "
            f"{_cell(Estimate(**s['greedy_after_minus_best_rule']))}",
        ]
    for row in report.starter:
        lines.append(
            f"Starter seed {row['seed']}: main {row['main']['agent']['mean']:.3f} vs "
            f"{row['main']['best_baseline']} {row['main']['best_baseline_surplus']['mean']:.3f}; "
            f"held-out family {row['held_out']['agent']['mean']:.3f} vs "
            f"{row['held_out']['best_baseline']} "
            f"{row['held_out']['best_baseline_surplus']['mean']:.3f}"
        )
    return "\n".join(lines)
