"""The layers: what serves, stores and judges never loads torch, and imports point down."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WALK_WITHOUT_TORCH = """
import importlib, json, pkgutil, sys, time
started = time.perf_counter()
packages = {packages}
imported = []
for name in packages:
    package = importlib.import_module(name)
    imported.append(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        if ".migrations" in module.name:
            continue
        importlib.import_module(module.name)
        imported.append(module.name)
print(json.dumps({{
    "imported": imported,
    "torch": sorted(m for m in sys.modules if m.split(".")[0] in {{"torch", "torchrl"}}),
    "seconds": time.perf_counter() - started,
}}))
"""


def _walk(packages: list[str]) -> dict[str, object]:
    script = WALK_WITHOUT_TORCH.format(packages=packages)
    answer = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    return dict(json.loads(answer.stdout))


def test_every_module_that_serves_stores_or_judges_imports_without_torch() -> None:
    walked = _walk(
        [
            "haggler.core",
            "haggler.policy",
            "haggler.store",
            "haggler.safety",
            "haggler.serving",
            "haggler.api",
            "haggler.web",
        ]
    )
    imported = walked["imported"]
    assert isinstance(imported, list)
    assert "haggler.api.app" in imported and "haggler.serving.turns" in imported
    assert "haggler.store.negotiations" in imported
    assert walked["torch"] == []


def test_the_learning_layer_is_where_torch_comes_in() -> None:
    walked = _walk(["haggler.learning"])
    assert "torch" in walked["torch"]  # type: ignore[operator]


LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
def test_the_import_contract_fails_on_an_import_against_the_layers(tmp_path: Path) -> None:
    """A copy of the package where the store imports the serving layer breaks the contract."""
    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "src"
    shutil.copytree(root / "src" / "haggler", copy / "haggler")
    shutil.copy(root / "pyproject.toml", tmp_path / "pyproject.toml")
    kept = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert kept.returncode == 0, kept.stdout[-2000:]
    store = copy / "haggler" / "store" / "catalogue.py"
    store.write_text(store.read_text() + "\nfrom haggler.serving import turns  # noqa\n")
    broken = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert broken.returncode != 0
    assert "haggler.store is not allowed to import haggler.serving" in broken.stdout
