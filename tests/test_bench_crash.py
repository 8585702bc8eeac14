"""`bench.crash`: a real server killed with SIGKILL under load loses nothing it acknowledged."""

from __future__ import annotations

from importlib.resources import as_file, files

from haggler.bench.crash import CrashConfig, run_crash


def test_kill_9_loses_no_acknowledged_move() -> None:
    with as_file(files("haggler.data").joinpath("starter_model.pth")) as starter:
        result = run_crash(CrashConfig(model_path=starter, kills=2, clients=2, seed=1))
    assert result.clients.moves > 0, result.server_log_tail
    assert result.moves_lost == 0, result
    assert result.negotiations_diverging == 0, result
    assert result.clients.kept_answer_differs == 0, result
    assert result.trained <= result.finished, result
