"""What README.md and docs/*.md show works as shown: every config block dry-runs with the real `snakemake`,
every `snakemake` command dry-runs, and every option of the project's own commands exists."""

import importlib
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.workflow import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
SCHEMA = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
SHIPPED = {p.name: yaml.safe_load(p.read_text()) for p in (ROOT / "config").glob("*.yaml") if p.name != "schema.yaml"}
WORKFLOW_FILES = ("Snakefile", "rules", "scripts", "report", "config", "profiles", "environment.yml", "ddpm")
# the console scripts: ddpm-sample -> ddpm.sampling:main, ...
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def blocks(language: str) -> list[tuple[str, str]]:
    """(file name, text) of every fenced block in `language` in the docs, dedented (a block may sit in a list)."""
    return [(path.name, textwrap.dedent(m.group(3))) for path in DOCS for m in FENCE.finditer(path.read_text())
            if m.group(2) == language]


def shown_configs() -> list[tuple[str, dict]]:
    """(file name, config) of every YAML block that names a section of config/schema.yaml, each config once: a
    workflow config or a fragment of one. Every YAML block must parse."""
    shown = {}
    for name, text in blocks("yaml"):
        try:
            block = yaml.safe_load(text)
        except yaml.YAMLError as error:
            pytest.fail(f"{name}: a YAML block that does not parse: {error}", pytrace=False)
        if isinstance(block, dict) and any(key in SCHEMA["properties"] for key in block):
            shown.setdefault(yaml.safe_dump(block), (name, block))
    return list(shown.values())


def is_full(config: dict) -> bool:
    """A full config has every section the schema requires; the rest are fragments."""
    return set(SCHEMA["required"]) <= set(config)


def dry_run_arguments(config: dict, configfile) -> list[str]:
    """The arguments that dry-run `config`: a full config as its own `--configfile` (written to `configfile`); a
    fragment as `--config` on top of config/config.yaml, as a user would apply it."""
    if is_full(config):
        configfile.write_text(yaml.safe_dump(config))
        return ["--configfile", str(configfile)]
    return ["--config", *(f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
                          for key, value in config.items())]


def shown_snakemake_commands() -> list[list[str]]:
    """Every `snakemake` command in the docs' bash blocks and inline code, as words; `--report` needs a finished
    run (tests/test_workflow.py builds one) and `...` stands for options left out."""
    texts = [text for _, text in blocks("bash")]
    texts += [m.group(1) for path in DOCS for m in re.finditer(r"`(snakemake [^`]*)`", path.read_text())]
    commands = {tuple(command) for text in texts for command in simple_commands(text)
                if command[0] == "snakemake" and "--report" not in command and "..." not in command}
    return [list(c) for c in sorted(commands)]


def simple_commands(text: str) -> list[list[str]]:
    """The commands of a shell text as lists of words, split at newlines, `&&`, `|` and `;`."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        command = []
        for word in shlex.split(line, comments=True) + ["&&"]:
            if word in ("&&", "|", ";"):
                commands += [command] if command else []
                command = []
            else:
                command.append(word)
    return commands


def dry_runs(workdir, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Each of `commands` (snakemake command lines, as words) as a dry run in `workdir`, a copy of the workflow, two
    at a time (the machine's two cores)."""
    def dry_run(words):
        dry = [] if {"-n", "--dry-run", "--dryrun"} & set(words) else ["-n"]
        return subprocess.run([sys.executable, "-m", "snakemake", *dry, *words[1:]], cwd=workdir,
                              capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(dry_run, commands))


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    """A folder that holds the workflow as a fresh clone does, with no data or results."""
    workdir = tmp_path_factory.mktemp("workflow")
    for name in WORKFLOW_FILES:
        (workdir / name).symlink_to(ROOT / name)
    return workdir


@pytest.mark.slow
def test_every_config_shown_dry_runs(workflow_copy):
    configs = shown_configs()
    assert any(is_full(config) for _, config in configs)  # the README's "The config"
    runs = [["snakemake", *dry_run_arguments(config, workflow_copy / f"shown-{i}.yaml")]
            for i, (_, config) in enumerate(configs)]
    for (name, config), result in zip(configs, dry_runs(workflow_copy, runs)):
        assert result.returncode == 0, f"{name}: {config}\n{result.stdout}{result.stderr}"


def test_a_full_config_shown_is_a_shipped_one_with_keys_left_out():
    def shortens(shown, shipped) -> bool:
        if isinstance(shown, dict) and isinstance(shipped, dict):
            return all(key in shipped and shortens(value, shipped[key]) for key, value in shown.items())
        return shown == shipped

    for name, config in shown_configs():
        if is_full(config):
            assert any(shortens(config, shipped) for shipped in SHIPPED.values()), f"{name}: {config}"


@pytest.mark.slow
def test_every_snakemake_command_shown_dry_runs(workflow_copy):
    commands = [c for c in shown_snakemake_commands() if "--use-conda" not in c or shutil.which("conda")]  # needs conda
    assert ["snakemake", "--cores", "1"] in commands  # the quick start
    for command, result in zip(commands, dry_runs(workflow_copy, commands)):
        assert result.returncode == 0, f"{shlex.join(command)}\n{result.stdout}{result.stderr}"


def project_command_options() -> dict[str, set[str]]:
    """module -> the options the docs' bash blocks give it: a console script (`ddpm-sample`), `-m <module>` of
    ddpm or benchmarks (also under torchrun), or `benchmarks/<name>.py`."""
    options = {}
    for _, text in blocks("bash"):
        for words in simple_commands(text):
            for i, word in enumerate(words):
                script = re.fullmatch(r"benchmarks/(\w+)\.py", word)
                if word in SCRIPTS:
                    module = SCRIPTS[word].partition(":")[0]
                elif script:
                    module = f"benchmarks.{script.group(1)}"
                elif i > 0 and words[i - 1] == "-m" and word.partition(".")[0] in ("ddpm", "benchmarks"):
                    module = word
                else:
                    continue
                given = {w.partition("=")[0] for w in words[i + 1:] if w.startswith("--")}
                options[module] = options.get(module, set()) | given
                break
    return options


@pytest.mark.parametrize("module, options", sorted(project_command_options().items()))
def test_every_option_of_a_project_command_shown_exists(module, options, capsys):
    with pytest.raises(SystemExit):
        importlib.import_module(module).main(["--help"])
    usage = capsys.readouterr().out
    missing = sorted(o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", usage))
    assert not missing, f"{module} --help has no {missing}:\n{usage}"
