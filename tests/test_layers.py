"""The packages' layers: models at the bottom, then components, then pipeline, serving and bench on
top. Imports go downwards only, so the training image needs no server and nothing is a cycle."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from pipeline import configs

# Each package and the packages it may import (besides itself).
ALLOWED = {
    "models": set(),
    "components": {"models"},
    "pipeline": {"models", "components"},
    "serving": {"models", "pipeline"},
    "bench": {"models", "components", "pipeline", "serving"},
    "kubeflow": {"pipeline"},
}
OURS = set(ALLOWED) | {"tests"}


def imports(package: str) -> dict[str, set[str]]:
    """{file: our top-level packages it imports}, function-level imports included."""
    found = {}
    for path in sorted((configs.REPO_ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(configs.REPO_ROOT))] = names & (OURS - {package})
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_go_down_the_layers_only(package):
    wrong = {f: sorted(names - ALLOWED[package]) for f, names in imports(package).items()
             if names - ALLOWED[package]}
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}: {wrong}"


def test_no_module_edits_sys_path():
    """The project is installed (`pip install -e .`) and scripts run as modules from the
    repository root (`python -m bench.accuracy`), so nothing needs to put the repo on sys.path."""
    editing = [f for package in ALLOWED for f in sorted((configs.REPO_ROOT / package).rglob("*.py"))
               if "sys.path.insert" in f.read_text() or "sys.path.append" in f.read_text()]
    assert not editing


@pytest.mark.parametrize("package", sorted(set(ALLOWED) - {"kubeflow"}))
def test_each_package_selects_keras_2_before_tensorflow_loads(package):
    """TF_USE_LEGACY_KERAS is set once, by models/__init__.py, which every package imports first:
    an entry point works without it in the shell."""
    code = (f"import os, sys; import {package}; "
            "assert os.environ.get('TF_USE_LEGACY_KERAS') == '1', 'not set'; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported first'")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=configs.REPO_ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_contract_loads_without_tensorflow():
    """Clients import the contract for its names; TensorFlow takes seconds to load."""
    code = ("import sys; import models.contract; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=configs.REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
