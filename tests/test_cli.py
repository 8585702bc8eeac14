"""The `haggler` command: train, evaluate, negotiate, bench-latency, and one-line errors."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from haggler.cli.main import cli, main
from haggler.config import Settings
from haggler.core.catalogue import SEED_CATALOGUE
from haggler.core.features import N_MOVES, OBSERVATION_SIZE
from haggler.core.sellers import HELD_OUT_STRATEGIES, TRAINING_STRATEGIES
from haggler.learning import pretraining
from haggler.learning.dqn import BuyerAgent
from haggler.learning.pretraining import STARTER_ENV_STEPS, PretrainConfig, PretrainProgress

HAGGLER = Path(sys.executable).with_name("haggler")
SETTING_NAMES = [name.upper() for name in Settings.model_fields]


def clean_environ() -> dict[str, str]:
    """The environment without any haggler setting, so only what a test sets applies."""
    return {key: value for key, value in os.environ.items() if key not in SETTING_NAMES}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in an empty folder (no stray `.env`) without haggler settings set."""
    monkeypatch.chdir(tmp_path)
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def invoke(*args: str) -> Result:
    """Run a command in-process through click's test runner (stdout and stderr apart)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def run_main(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run the real entry point in-process, as `haggler ARGS` would."""
    monkeypatch.setattr(sys, "argv", ["haggler", *args])
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *mentions: str) -> None:
    assert code != 0
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("haggler: error: ")
    for mention in mentions:
        assert mention in lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model trained once by `haggler train`, and files that are not models."""
    folder = tmp_path_factory.mktemp("cli")
    model = folder / "models" / "x.pth"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for name in SETTING_NAMES:
            patch.delenv(name, raising=False)
        result = invoke(
            "train", "--env-steps", "3000", "--quiet", "--seed", "0", "--model", str(model)
        )
    assert result.exit_code == 0, result.output
    assert f"wrote {model}" in result.stdout
    corrupt = folder / "corrupt.pth"
    corrupt.write_bytes(bytes(range(256)) * 16)
    not_a_checkpoint = folder / "weights.pth"
    torch.save({"layer.weight": torch.zeros(2, 2)}, not_a_checkpoint)
    return {
        "model": model,
        "corrupt": corrupt,
        "not_a_checkpoint": not_a_checkpoint,
        "missing": folder / "missing.pth",
    }


# -- train ------------------------------------------------------------------------------------


def test_train_writes_a_loadable_model(files: dict[str, Path]) -> None:
    agent = BuyerAgent.from_file(files["model"])
    assert agent.metadata["trained_on"] == list(TRAINING_STRATEGIES)
    assert agent.metadata["held_out"] == list(HELD_OUT_STRATEGIES)
    assert agent.metadata["pretrain_env_steps"] >= 3000
    assert sorted(p.name for p in files["model"].parent.iterdir()) == ["x.pth"]


def test_train_if_missing_keeps_an_existing_model(files: dict[str, Path]) -> None:
    before = files["model"].read_bytes()
    result = invoke("train", "--if-missing", "--env-steps", "3000", "--model", str(files["model"]))
    assert result.exit_code == 0
    assert "not training" in result.stdout
    assert files["model"].read_bytes() == before


def test_train_without_a_budget_trains_the_starter_models_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A budget in steps, not seconds, so the same seed gives the same model on any machine."""
    seen: list[PretrainConfig] = []
    real = pretraining.pretrain

    def recording(
        agent: BuyerAgent,
        config: PretrainConfig,
        on_progress: Callable[[PretrainProgress], None] | None = None,
    ) -> PretrainProgress:
        seen.append(config)  # then train for a few steps only: the test checks the budget
        return real(agent, dataclasses.replace(config, env_steps=64), on_progress)

    monkeypatch.setattr(pretraining, "pretrain", recording)
    assert invoke("train", "--quiet", "--model", "m.pth").exit_code == 0
    assert invoke("train", "--quiet", "--seconds", "30", "--model", "n.pth").exit_code == 0
    default, capped = seen
    assert (default.env_steps, default.seconds, default.seed) == (STARTER_ENV_STEPS, None, 0)
    # --seconds is an extra cap: the step budget stays.
    assert (capped.env_steps, capped.seconds) == (STARTER_ENV_STEPS, 30.0)
    assert BuyerAgent.from_file("m.pth").metadata["pretrain_env_steps"] == 64


def test_train_help_names_the_default_budget() -> None:
    result = invoke("train", "--help")
    assert result.exit_code == 0
    assert f"{STARTER_ENV_STEPS:,}" in " ".join(result.output.split())


def test_train_twice_with_the_same_seed_and_budget_writes_the_same_weights() -> None:
    # Past learning_starts (5,000), so that gradient steps happen and are compared too.
    args = ("train", "--quiet", "--env-steps", "5600", "--seed", "3")
    assert invoke(*args, "--model", "a.pth").exit_code == 0
    assert invoke(*args, "--model", "b.pth").exit_code == 0
    first, second = BuyerAgent.from_file("a.pth"), BuyerAgent.from_file("b.pth")
    assert first.gradient_steps == second.gradient_steps > 0
    assert first.metadata["pretrain_seed"] == 3
    weights, again = first.q_network.state_dict(), second.q_network.state_dict()
    assert all(torch.equal(tensor, again[name]) for name, tensor in weights.items())


# -- starter-model ----------------------------------------------------------------------------


def test_starter_model_installs_the_shipped_model_ready_to_serve(isolated: Path) -> None:
    """The shipped file is `haggler train --seed 0` with the default budget, on today's
    observation layout (a model of an older layout could not serve at all)."""
    result = invoke("starter-model")
    assert result.exit_code == 0, result.output
    installed = isolated / "models" / "buyer_agent.pth"
    assert f"Installed the starter model as {installed.relative_to(isolated)}" in result.stdout
    agent = BuyerAgent.from_file(installed)
    assert agent.q_values(np.zeros((3, OBSERVATION_SIZE), dtype=np.float32)).shape == (3, N_MOVES)
    assert agent.metadata["trained_on"] == list(TRAINING_STRATEGIES)
    assert agent.metadata["held_out"] == list(HELD_OUT_STRATEGIES)
    assert agent.metadata["pretrain_seed"] == 0
    assert agent.metadata["pretrain_env_steps"] == STARTER_ENV_STEPS
    elsewhere = isolated / "elsewhere" / "m.pth"
    assert invoke("starter-model", "--model", str(elsewhere)).exit_code == 0
    assert elsewhere.read_bytes() == installed.read_bytes()


def test_starter_model_if_missing_keeps_an_existing_model(isolated: Path) -> None:
    existing = isolated / "mine.pth"
    existing.write_bytes(b"my own model")
    result = invoke("starter-model", "--if-missing", "--model", str(existing))
    assert result.exit_code == 0
    assert "exists; keeping it" in result.stdout
    assert existing.read_bytes() == b"my own model"


# -- evaluate ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluation_output(files: dict[str, Path]) -> str:
    result = invoke("evaluate", "--model", str(files["model"]), "--episodes", "50", "--json")
    assert result.exit_code == 0, result.output
    return result.stdout


def assert_estimate(value: object) -> None:
    assert isinstance(value, dict)
    assert set(value) == {"mean", "ci_low", "ci_high"}


def test_evaluate_json_has_the_documented_keys(evaluation_output: str) -> None:
    data = json.loads(evaluation_output)
    assert data["episodes"] == 50
    for suite in (data, data["held_out"]):
        for buyer in ("agent", "best_baseline", "type_oracle"):
            assert_estimate(suite[buyer]["normalised_surplus"])
            assert_estimate(suite[buyer]["agreement_rate_feasible"])
        assert_estimate(suite["paired_test"]["surplus_diff"])
        assert 0.0 <= suite["paired_test"]["p_value"] <= 1.0
        surplus = suite["agent"]["normalised_surplus"]
        assert 0.0 <= surplus["mean"] <= 1.0
        assert surplus["ci_low"] <= surplus["mean"] <= surplus["ci_high"]
    assert set(data["strategies"]) == set(TRAINING_STRATEGIES)
    assert set(data["held_out"]["strategies"]) == set(HELD_OUT_STRATEGIES)


def test_evaluate_json_is_standard_json(evaluation_output: str) -> None:
    # NaN and Infinity are not JSON (RFC 8259): jq, JavaScript's JSON.parse and most other
    # consumers reject the whole document. An undefined figure should be null.
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    json.loads(evaluation_output, parse_constant=refuse)


def test_evaluate_on_chosen_strategies_skips_the_held_out_suite(files: dict[str, Path]) -> None:
    result = invoke(
        "evaluate", "--model", str(files["model"]), "--episodes", "20", "--json",
        "--strategy", "linear", "--strategy", "hardliner", "--max-rounds", "5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["strategies"]) <= {"linear", "hardliner"}
    assert "held_out" not in data


def test_evaluate_reports_the_spread_over_several_models(files: dict[str, Path]) -> None:
    model = str(files["model"])
    result = invoke(
        "evaluate", "--model", model, "--model", model, "--episodes", "20", "--json",
        "--strategy", "linear",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["models"] == [model, model]
    assert len(data["runs"]) == 2
    # the same model twice: no spread at all
    assert data["across_models"]["agent surplus"]["sd"] == 0.0


def test_evaluate_prints_tables_by_default(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(files["model"])
    args = ["evaluate", "--model", model, "--episodes", "20", "--strategy", "conceder"]
    code, out, err = run_main(args, monkeypatch, capsys)
    assert code == 0, err
    assert err == ""
    assert out.startswith(f"Model {model}: 20 held-out negotiations")
    for name in ("agent", "accept_first", "type_oracle", "paired t-test"):
        assert name in out


# -- negotiate --------------------------------------------------------------------------------


def test_negotiate_prints_a_transcript(files: dict[str, Path]) -> None:
    result = invoke("negotiate", "--model", str(files["model"]), "--seller", "linear")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    product = SEED_CATALOGUE[0]
    assert lines[0].startswith(f"{product.name}: list price {product.list_price:.2f}")
    assert "seller 'linear'" in lines[0]
    assert re.match(r"\s*round\s+0\s+seller\s+counter\s+\d+\.\d\d$", lines[1])
    assert re.match(r"\s*round\s+1\s+buyer\s+", lines[2])
    assert re.match(r"(Deal at \d+\.\d\d per unit|No deal \()", lines[-1])


def test_negotiate_is_repeatable_and_follows_the_options(files: dict[str, Path]) -> None:
    args = [
        "negotiate", "--model", str(files["model"]), "--seller", "hardliner",
        "--product", "hard hat, en 397", "--limit", "17.5", "--rounds", "3", "--seed", "4",
    ]  # fmt: skip
    first, second = invoke(*args), invoke(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    assert first.stdout.startswith(
        "Hard hat, EN 397: list price 18.40, buyer limit 17.50, 3 rounds"
    )
    rounds = [int(m) for m in re.findall(r"round\s+(\d+)", first.stdout)]
    assert max(rounds) <= 3


def test_negotiate_uses_model_path_from_the_environment(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_PATH", str(files["model"]))
    result = invoke("negotiate")
    assert result.exit_code == 0, result.output
    assert "round  0" in result.stdout


def test_negotiate_uses_model_path_from_a_dotenv_file(
    files: dict[str, Path], isolated: Path
) -> None:
    (isolated / ".env").write_text(f"MODEL_PATH={files['model']}\n")
    result = invoke("negotiate", "--seller", "conceder")
    assert result.exit_code == 0, result.output
    assert "seller 'conceder'" in result.stdout


# -- bench-latency ----------------------------------------------------------------------------


def test_bench_latency_prints_median_and_p99(files: dict[str, Path]) -> None:
    result = invoke("bench-latency", "--model", str(files["model"]), "--calls", "200")
    assert result.exit_code == 0, result.output
    assert "200 calls" in result.stdout
    figures = re.findall(r"median\s+([\d.]+) µs\s+p99\s+([\d.]+) µs", result.stdout)
    assert len(figures) == 2
    for median, p99 in figures:
        assert 0 < float(median) <= float(p99)


# -- errors: one line on stderr, a non-zero exit, no traceback --------------------------------


BAD_INPUT = {
    "unknown strategy": (
        ["negotiate", "--seller", "haggle_bot", "--model", "{model}"],
        "haggle_bot",
    ),
    "unknown strategy to evaluate": (
        ["evaluate", "--strategy", "nope", "--model", "{model}"],
        "nope",
    ),
    "negative episodes": (["evaluate", "--episodes", "-5", "--model", "{model}"], "-5"),
    "zero episodes": (["evaluate", "--episodes", "0", "--model", "{model}"], "episodes"),
    "missing model": (["evaluate", "--model", "{missing}"], "missing.pth"),
    "model is a folder": (["negotiate", "--model", "{folder}"], "not found"),
    "corrupt model": (["negotiate", "--model", "{corrupt}"], "corrupt.pth"),
    "not a checkpoint": (["bench-latency", "--model", "{not_a_checkpoint}"], "weights.pth"),
    "unknown product": (["negotiate", "--model", "{model}", "--product", "Flux capacitor"], "Flux"),
    "zero limit": (["negotiate", "--model", "{model}", "--limit", "0"], "positive"),
    "negative limit": (["negotiate", "--model", "{model}", "--limit", "-5"], "positive"),
    "nan limit": (["negotiate", "--model", "{model}", "--limit", "nan"], "finite"),
    "infinite limit": (["negotiate", "--model", "{model}", "--limit", "inf"], "finite"),
    "text limit": (["negotiate", "--model", "{model}", "--limit", "cheap"], "cheap"),
    "zero rounds": (["negotiate", "--model", "{model}", "--rounds", "0"], "rounds"),
    "too few calls": (["bench-latency", "--model", "{model}", "--calls", "10"], "calls"),
    "zero env steps": (["train", "--env-steps", "0", "--model", "{folder}/m.pth"], "env-steps"),
    "unknown command": (["haggle"], "haggle"),
}


@pytest.mark.parametrize(("args", "mention"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_on_stderr(
    args: list[str],
    mention: str,
    files: dict[str, Path],
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = {name: str(path) for name, path in files.items()} | {"folder": str(isolated)}
    code, out, err = run_main([arg.format(**paths) for arg in args], monkeypatch, capsys)
    assert_one_line_error(code, out, err, mention)


def test_a_model_that_cannot_be_written_is_one_line_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "--env-steps", "8", "--quiet", "--model", "/dev/null/x.pth"]
    code, out, err = run_main(args, monkeypatch, capsys)
    assert_one_line_error(code, out, err, "/dev/null")


def test_help_exits_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["--help"], monkeypatch, capsys)
    assert (code, err) == (0, "")
    for command in ("train", "evaluate", "negotiate", "bench-latency"):
        assert command in out


# The real `haggler` executable, as a user's shell runs it. Each start imports torch (~3 s), so
# a few representative cases run side by side instead of one after the other.
SUBPROCESS_CASES = {
    "unknown strategy": ["negotiate", "--seller", "haggle_bot", "--model", "{model}"],
    "corrupt model": ["evaluate", "--episodes", "5", "--model", "{corrupt}"],
    "non-positive limit": ["negotiate", "--model", "{model}", "--limit", "-1"],
}


@pytest.fixture(scope="module")
def executable_runs(
    files: dict[str, Path],
) -> Iterator[dict[str, subprocess.CompletedProcess[str]]]:
    paths = {name: str(path) for name, path in files.items()}
    running = {
        name: subprocess.Popen(
            [str(HAGGLER), *(arg.format(**paths) for arg in args)],
            cwd=files["model"].parent,
            env=clean_environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in SUBPROCESS_CASES.items()
    }
    finished = {}
    try:
        for name, process in running.items():
            out, err = process.communicate(timeout=180)
            finished[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        yield finished
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_the_haggler_executable_reports_bad_input_in_one_line(
    case: str, executable_runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    run = executable_runs[case]
    assert_one_line_error(run.returncode, run.stdout, run.stderr)


# -- checkpoints ------------------------------------------------------------------------------


@pytest.fixture
def checkpoint_folder(files: dict[str, Path], isolated: Path) -> Path:
    from datetime import UTC, datetime

    from haggler.learning.checkpoints import save_checkpoint

    agent = BuyerAgent.from_file(files["model"])
    folder = isolated / "models" / "checkpoints"
    for n in (10, 20):
        save_checkpoint(
            agent, folder, negotiations=n, keep=5, now=datetime(2023, 12, 25, 12, 0, n, tzinfo=UTC)
        )
    return folder


def test_checkpoints_list_shows_them_oldest_first(checkpoint_folder: Path) -> None:
    result = invoke("checkpoints", "list")
    assert result.exit_code == 0
    names = re.findall(r"buyer_agent_n\d+_\d{8}_\d{6}\.pth", result.output)
    assert names == ["buyer_agent_n10_20231225_120010.pth", "buyer_agent_n20_20231225_120020.pth"]


def test_checkpoints_list_says_when_there_are_none() -> None:
    result = invoke("checkpoints", "list")
    assert result.exit_code == 0
    assert "No checkpoints in models/checkpoints" in result.output


def test_checkpoints_restore_makes_it_the_main_model(
    checkpoint_folder: Path, isolated: Path
) -> None:
    result = invoke("checkpoints", "restore", "buyer_agent_n10_20231225_120010.pth")
    assert result.exit_code == 0, result.output
    restored = BuyerAgent.from_file(isolated / "models" / "buyer_agent.pth")
    assert restored.metadata["negotiations"] == 10
    # The restore goes through the store, as the API's does: a running service follows it.
    from haggler.store import snapshots
    from haggler.store.database import make_engine, session_factory

    engine = make_engine("sqlite:///data/haggler.db")
    with session_factory(engine)() as session:
        serving = snapshots.serving_version(session=session)
        assert serving is not None
        stored = snapshots.get_snapshot(serving, session=session)
    engine.dispose()
    assert stored.checkpoint == "buyer_agent_n10_20231225_120010.pth"
    assert f"as model version {serving}" in result.output


@pytest.mark.parametrize(
    ("path", "mention"),
    [
        ("../buyer_agent.pth", "outside the checkpoint folder"),
        ("/etc/passwd", "outside the checkpoint folder"),
        ("buyer_agent_n99_20231225_120000.pth", "no checkpoint"),
    ],
)
def test_checkpoints_restore_refuses_bad_paths_and_changes_nothing(
    checkpoint_folder: Path,
    isolated: Path,
    path: str,
    mention: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_main(["checkpoints", "restore", path], monkeypatch, capsys)
    assert_one_line_error(code, out, err, mention)
    assert not (isolated / "models" / "buyer_agent.pth").exists()


def test_checkpoints_restore_refuses_a_file_that_is_not_a_checkpoint(
    checkpoint_folder: Path,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (checkpoint_folder / "buyer_agent_n30_20231225_120030.pth").write_bytes(b"not a model")
    code, out, err = run_main(
        ["checkpoints", "restore", "buyer_agent_n30_20231225_120030.pth"], monkeypatch, capsys
    )
    assert_one_line_error(code, out, err, "not a readable model file")
    assert not (isolated / "models" / "buyer_agent.pth").exists()


def test_negotiate_against_a_running_service_as_the_seller(
    files: dict[str, Path], isolated: Path
) -> None:
    """A person plays the seller at the prompt against a real `haggler serve`."""
    import socket
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = clean_environ() | {
        "MODEL_PATH": str(files["model"]),
        "DATABASE_URL": f"sqlite:///{isolated / 'h.db'}",
    }
    # The purchaser's token opens the negotiation; without one, the command says what it needs.
    subprocess.run(
        [str(HAGGLER), "users", "add", "pat", "--role", "purchaser", "--tokens-only"],
        env=env,
        check=True,
        capture_output=True,
    )
    issued = subprocess.run(
        [str(HAGGLER), "users", "token", "pat"], env=env, check=True, capture_output=True, text=True
    )
    env["HAGGLER_TOKEN"] = issued.stdout.split()[-1]
    server = subprocess.Popen(
        [str(HAGGLER), "serve", "--port", str(port)],
        cwd=isolated,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # poll for readiness
            try:
                urllib.request.urlopen(f"{url}/api/products", timeout=1).close()
                break
            except urllib.error.HTTPError:  # it answers (401 without a token): it is up
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
        played = subprocess.run(
            [str(HAGGLER), "negotiate", "--url", url, "--limit", "270", "--quantity", "3"],
            input="0\n320\nnot-a-price\nwalk\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        server.terminate()
        server.wait(30)
    assert played.returncode == 0, played.stderr
    assert "refused: 422" in played.stdout  # the zero ask, then the word, are refused
    assert played.stdout.count("refused") == 2
    assert "buyer   offers" in played.stdout
    assert "No deal (seller_walked)." in played.stdout


def test_the_users_commands_manage_accounts_and_tokens_with_one_line_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{isolated / 'h.db'}")
    code, out, _ = run_main(["users", "add", "alice", "--role", "purchaser"], monkeypatch, capsys)
    assert code == 0 and "Password (shown once): " in out
    code, out, _ = run_main(
        ["users", "add", "acme", "--role", "seller", "--purchaser", "alice", "--tokens-only"],
        monkeypatch,
        capsys,
    )
    assert code == 0 and "Password" not in out
    code, out, _ = run_main(["users", "token", "acme", "--label", "bot"], monkeypatch, capsys)
    secret = out.split()[-1]
    assert code == 0 and secret.startswith("hgl_")
    code, out, _ = run_main(["users", "tokens"], monkeypatch, capsys)
    assert "acme" in out and "bot" in out and secret not in out
    assert run_main(["users", "revoke", "1"], monkeypatch, capsys)[0] == 0
    code, out, _ = run_main(["users", "list"], monkeypatch, capsys)
    assert "acme" in out and "alice" in out and "tokens" in out
    for args, mention in (
        (["users", "add", "alice", "--role", "purchaser"], "exists"),
        (["users", "add", "bad name", "--role", "seller"], "bad name"),
        (["users", "add", "x", "--role", "purchaser", "--purchaser", "alice"], "only a seller"),
        (["users", "add", "y", "--role", "seller", "--purchaser", "acme"], "not a purchaser"),
        (["users", "revoke", "99"], "no token 99"),
        (["users", "password", "nobody"], "no account"),
        (["negotiate", "--url", "http://127.0.0.1:9"], "HAGGLER_TOKEN"),
    ):
        assert_one_line_error(*run_main(args, monkeypatch, capsys), mention)
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert_one_line_error(
        *run_main(["users", "password", "alice", "--password-stdin"], monkeypatch, capsys),
        "at least 10 characters",
    )


def test_training_off_a_terminal_prints_a_line_per_tenth_not_a_bar(isolated: Path) -> None:
    result = invoke("train", "--env-steps", "3000", "--model", "m.pth")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("training:")]
    assert 1 <= len(lines) <= 11, result.stderr  # (progress comes every 0.5 s at most)
    assert lines[-1].startswith("training: 100%") and "negotiations=" in lines[-1]
    assert "\r" not in result.stderr and "|" not in result.stderr  # no bar redrawn into a log
