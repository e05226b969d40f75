"""The layers promised in docs/architecture.md: imports only point down, and the search service runs
without the orchestration stack."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("lensflow", "models", "tasks", "flows", "serving")
# what each layer may import (first-party), bottom to top; the CLI and `lensflow up` sit on everything
ALLOWED = {
    "lensflow/core": {"lensflow.core"},
    "models": {"lensflow.core", "models"},
    "tasks": {"lensflow.core", "models", "tasks"},
    "flows": {"lensflow.core", "models", "tasks", "flows"},
    "serving": {"lensflow.core", "models", "serving"},
}
# third-party packages a layer must not import, at any depth of a function body
FORBIDDEN = {
    "lensflow/core": {"prefect", "prefect_dask", "dask", "distributed", "great_expectations", "dvc", "torch"},
    "models": {"prefect", "mlflow", "lancedb", "great_expectations", "dvc", "dask", "distributed"},
    "serving": {"prefect", "prefect_dask", "dask", "distributed", "great_expectations", "dvc"},
}


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports (top level and inside functions), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def layer_of(module: str) -> str:
    return "lensflow.core" if module.startswith("lensflow.core") else module.split(".")[0]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down(layer):
    wrong = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for line, module in imports(path):
            top = module.split(".")[0]
            rel = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if top in FIRST_PARTY:
                target = layer_of(module)
                if module == "lensflow" or (target not in ALLOWED[layer] and module not in ALLOWED[layer]):
                    wrong.append(rel)
            elif top in FORBIDDEN.get(layer, ()):
                wrong.append(rel)
    assert not wrong, "upward or forbidden imports:\n" + "\n".join(wrong)


def test_the_search_service_imports_without_orchestration():
    """`import serving.app` (what `lensflow serve` and a container run) loads no Prefect, Dask, Great
    Expectations, DVC, nor the tasks/flows layers."""
    code = "import sys, json; import serving.app; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], cwd=ROOT, text=True)))
    banned = {"prefect", "prefect_dask", "dask", "distributed", "great_expectations", "dvc", "tasks", "flows"}
    assert not loaded & banned, sorted(loaded & banned)
    assert {"fastapi", "lensflow", "serving"} <= loaded  # the check itself imported what it should


def test_the_client_needs_neither_torch_nor_orchestration():
    """`lensflow.client` is for storefront backends: httpx and pydantic, no model or platform stack."""
    code = "import sys, json; import lensflow.client; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], cwd=ROOT, text=True)))
    banned = {"torch", "transformers", "lancedb", "mlflow", "prefect", "dask", "dvc", "tasks", "flows", "models"}
    assert not loaded & banned, sorted(loaded & banned)
    assert {"httpx", "pydantic"} <= loaded
