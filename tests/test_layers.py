"""The layers promised in docs/architecture.md: imports only point down, and the search service runs
without the orchestration stack."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERED = ("models", "tasks", "flows", "serving")  # the repo's folders, installed as lensflow.<name>
FIRST_PARTY = ("lensflow", *LAYERED)
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
    parts = module.split(".")
    if module.startswith("lensflow.core"):
        return "lensflow.core"
    return parts[1] if parts[0] == "lensflow" and len(parts) > 1 and parts[1] in LAYERED else parts[0]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down(layer):
    wrong = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for line, module in imports(path):
            top = module.split(".")[0]
            rel = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if top in LAYERED:  # a bare `models`/`tasks`/...: the installed names are lensflow.<name>
                wrong.append(f"{rel} (import it as lensflow.{module})")
            elif top in FIRST_PARTY:
                target = layer_of(module)
                if module == "lensflow" or (target not in ALLOWED[layer] and module not in ALLOWED[layer]):
                    wrong.append(rel)
            elif top in FORBIDDEN.get(layer, ()):
                wrong.append(rel)
    assert not wrong, "upward or forbidden imports:\n" + "\n".join(wrong)


def test_tasks_define_no_flow_and_start_no_server():
    """Flows live in flows/ and only wire; tasks/ holds plain functions and @task wrappers, so it neither defines
    a @flow nor starts a Prefect API server (a `tasks/shard.py` once did both)."""
    wrong = []
    for path in sorted((ROOT / "tasks").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for d in node.decorator_list:
                    f = d.func if isinstance(d, ast.Call) else d
                    if (isinstance(f, ast.Name) and f.id == "flow") or (
                        isinstance(f, ast.Attribute) and f.attr == "flow"
                    ):
                        wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} defines the flow {node.name}")
        for line, module in imports(path):
            if module.startswith("prefect.server") or module == "prefect.testing.utilities":
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} (a server belongs in flows/)")
    assert not wrong, "\n".join(wrong)


def test_the_search_service_imports_without_orchestration():
    """`import lensflow.serving.app` (what `lensflow serve` and a container run) loads no Prefect, Dask, Great
    Expectations, DVC, nor the tasks/flows layers."""
    loaded = loaded_by("import lensflow.serving.app")
    banned = {"prefect", "prefect_dask", "dask", "distributed", "great_expectations", "dvc"}
    banned |= {"lensflow.tasks", "lensflow.flows"}
    assert not loaded & banned, sorted(loaded & banned)
    assert {"fastapi", "lensflow", "lensflow.serving"} <= loaded  # the check itself imported what it should


def test_the_client_needs_neither_torch_nor_orchestration():
    """`lensflow.client` is for storefront backends: httpx and pydantic, no model or platform stack."""
    loaded = loaded_by("import lensflow.client")
    banned = {"torch", "transformers", "lancedb", "mlflow", "prefect", "dask", "dvc"}
    banned |= {"lensflow.tasks", "lensflow.flows", "lensflow.models"}
    assert not loaded & banned, sorted(loaded & banned)
    assert {"httpx", "pydantic"} <= loaded


def loaded_by(statement: str) -> set[str]:
    """Top-level modules (and lensflow's subpackages, as lensflow.<name>) a fresh interpreter has loaded after
    `statement`, run outside the repo (so only the installed names resolve)."""
    code = (
        f"import sys, json; {statement}; "
        "print(json.dumps(sorted({'.'.join(m.split('.')[:2]) if m.startswith('lensflow.') else m.split('.')[0] "
        "for m in sys.modules})))"
    )
    return set(json.loads(subprocess.check_output([sys.executable, "-c", code], cwd="/", text=True)))


def test_one_top_level_name_is_installed(tmp_path):
    """The wheel puts everything under `lensflow/` (models/, tasks/, flows/ and serving/ as lensflow.<name>),
    with the presets and the page, so a user's own `models` or `tasks` package never collides with ours."""
    import shutil
    import zipfile

    src = tmp_path / "src"  # built from a copy: setuptools writes build/ and *.egg-info/ beside the sources
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("lensflow", "models", "tasks", "flows", "serving"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / file, src / file)
    out = tmp_path / "dist"
    wheel_cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out)]
    subprocess.run([*wheel_cmd, str(src)], check=True, capture_output=True, cwd=src)
    (wheel,) = out.glob("lensflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.startswith("lensflow-")} == {"lensflow"}
    for expected in (
        "lensflow/models/encoder.py",
        "lensflow/models/configs/tiny.json",
        "lensflow/models/configs/strategies/heads.json",
        "lensflow/tasks/helpers/catalog.py",
        "lensflow/flows/retrain.py",
        "lensflow/serving/page.html",
        "lensflow/core/configs/index.json",
    ):
        assert expected in names, expected
