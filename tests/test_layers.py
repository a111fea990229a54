"""The package's layering (docs/design.md): each module imports only modules of the layers above it."""

import ast
import subprocess
import sys

from tests.conftest import ROOT

LAYERS = [
    ("samplers",),
    ("files", "checks"),
    ("config", "dataset_info"),
    ("conditioning",),
    ("unet", "ddpm_unet", "diffusion", "data", "checkpoint", "images", "plots", "ema", "optim"),
    ("models",),
    ("run_files", "extractors", "export"),
    ("training", "sampling", "metrics"),
    ("launch", "experiments", "summary", "score"),
    ("workflow", "reruns"),
]
LAYER = {module: number for number, modules in enumerate(LAYERS) for module in modules}


def imported_ddpm_modules(module: str) -> set[str]:
    """The ddpm modules `module` imports anywhere in its file, inside functions too."""
    tree = ast.parse((ROOT / "ddpm" / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name.split(".")[1] for name in names if name.startswith("ddpm.")}


def test_every_module_has_a_layer():
    modules = {path.stem for path in (ROOT / "ddpm").glob("*.py")} - {"__init__"}
    assert modules == set(LAYER)


def test_modules_import_only_the_layers_above_them():
    wrong = {module: sorted(i for i in imported_ddpm_modules(module) if LAYER[i] >= LAYER[module]) for module in LAYER}
    assert {module: found for module, found in wrong.items() if found} == {}


def test_the_workflow_config_checks_load_without_torch():
    """The Snakefile imports these on every start, a cluster job's too: no torch (seconds) on the way."""
    code = ("import sys, ddpm.experiments, ddpm.dataset_info; "
            "print(sorted(m for m in ('torch', 'torchvision', 'PIL') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"
