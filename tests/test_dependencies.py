"""The README's set-up (`pip install -e .`) installs what its commands import: here, `snakemake --report`."""

import ast
import importlib.metadata
import importlib.util
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def installed_by(requirements: list[str], extras: set[str]) -> set[str]:
    """The distributions `requirements` install when `extras` are asked for, as canonical names."""
    names = set()
    for requirement in map(Requirement, requirements):
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in extras | {""}):
            names.add(canonicalize_name(requirement.name))
    return names


def report_imports() -> set[str]:
    """The top-level modules that snakemake's report code imports, other than the standard library and snakemake."""
    report = Path(importlib.util.find_spec("snakemake.report").origin).parent
    modules = set()
    for source in report.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.partition(".")[0])
    return modules - set(sys.stdlib_module_names) - {"snakemake"}


def test_the_main_dependencies_provide_what_the_report_imports():
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    snakemake = next(r for r in map(Requirement, ours) if canonicalize_name(r.name) == "snakemake")
    provided = installed_by(ours, set()) | installed_by(importlib.metadata.requires("snakemake"), snakemake.extras)
    distributions = importlib.metadata.packages_distributions()
    modules = report_imports()
    assert "pygments" in modules and "jinja2" in modules  # the walk found the report's imports
    missing = {m: distributions.get(m) for m in modules
               if not {canonicalize_name(d) for d in distributions.get(m, [])} & provided}
    assert not missing, f"imported by snakemake --report, but not in pyproject.toml's dependencies: {missing}"
