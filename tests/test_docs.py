"""The documentation: every shell command in README.md and docs/*.md runs, and the pages generated
from the code cover it (`make docs` builds the site itself, with warnings as errors).

A command in a ```bash block runs as written, in a fresh folder that sees the repository's
`tune/`, `ablations/` and `examples/`. A command that needs what a test machine lacks ends with a
comment naming it, `# needs: gpu` (or `data`, `run`, `cluster`, `server`, `network`, `time`); it is
then checked without its work: `make T` as `make -n T` (the recipe make would run),
`adautomix train ...` and `python tune/run_ablation.py ...` with `--dry-run` (the config, or the
study's trials, resolved and validated), anything else with `bash -n` (it parses).
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO

sys.path.insert(0, str(REPO / "docs"))
import gen_pages  # noqa: E402  (docs/gen_pages.py, the MkDocs hook that makes the reference pages)

DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NEEDS = {"gpu", "data", "run", "cluster", "server", "network", "time"}
NEEDS_MARK = re.compile(r"#\s*needs:\s*([\w, ]+)\s*$")
SHOWN_TO_COMMANDS = ("tune", "ablations", "examples", "Makefile", "pyproject.toml")


@dataclasses.dataclass(frozen=True)
class Command:
    where: str  # file:line
    text: str  # the command as a reader copies it (continuation lines joined)
    needs: frozenset[str]


def doc_commands(path: Path) -> list[Command]:
    """The commands of the file's ```bash blocks, a backslash-continued command as one."""
    commands = []
    text = path.read_text()
    for block in re.finditer(r"^```bash\n(.*?)^```", text, re.M | re.S):
        first_line = text[:block.start()].count("\n") + 2
        pending, start = "", 0
        for n, line in enumerate(block.group(1).splitlines(), first_line):
            if not pending:
                start = n
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command, pending = (pending + line).strip(), ""
            if not command or command.startswith("#"):
                continue
            mark = NEEDS_MARK.search(command)
            needs = frozenset(w.strip() for w in mark.group(1).split(",")) if mark else frozenset()
            commands.append(Command(f"{path.relative_to(REPO)}:{start}", command, needs))
    return commands


ALL_COMMANDS = [c for path in DOC_FILES for c in doc_commands(path)]


def check_of(command: Command) -> tuple[str, str]:
    """(how, shell line): the command itself, or the check that stands in for it (module docstring)."""
    if not command.needs:
        return "run", command.text
    words = shlex.split(command.text, comments=True)
    if words[:1] == ["make"]:
        return "make -n", shlex.join(["make", "-n", *words[1:]])
    dry = words[:2] in (["adautomix", "train"], ["python", "tune/run_ablation.py"])
    if dry and "run" not in command.needs and "--dry-run" not in words:
        return "--dry-run", shlex.join([*words, "--dry-run"])
    return "bash -n", command.text


def unique_checks() -> list:
    """One test per distinct check (README and the docs repeat some commands), named file:line."""
    seen, checks = set(), []
    for command in ALL_COMMANDS:
        how, line = check_of(command)
        if (how, line) not in seen:
            seen.add((how, line))
            checks.append(pytest.param(command, how, line, id=f"{command.where} {how}"))
    return checks


def test_the_docs_have_commands_and_every_marker_names_a_known_need():
    assert len(ALL_COMMANDS) > 20
    unknown = [(c.where, sorted(c.needs - NEEDS)) for c in ALL_COMMANDS if c.needs - NEEDS]
    assert not unknown, f"unknown needs (known: {sorted(NEEDS)}): {unknown}"


@pytest.mark.parametrize("command,how,line", unique_checks())
def test_every_shell_command_in_the_docs_runs_or_passes_its_check(command, how, line, tmp_path):
    for name in SHOWN_TO_COMMANDS:
        (tmp_path / name).symlink_to(REPO / name)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    syntax = subprocess.run(["bash", "-n", "-c", command.text], capture_output=True, text=True, timeout=30)
    assert syntax.returncode == 0, f"{command.where}: {command.text}\n{syntax.stderr}"
    if how == "bash -n":
        return
    done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{command.where}: {line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def test_the_check_of_a_marked_command_is_its_dry_run():
    """The checks stand in for the work: a marked study or run is dry-run, make shows its recipe."""
    train = Command("x", "adautomix train method.name=mixup train.epochs=5  # needs: time", frozenset({"time"}))
    assert check_of(train) == ("--dry-run", "adautomix train method.name=mixup train.epochs=5 --dry-run")
    assert check_of(Command("x", "make run  # needs: time", frozenset({"time"}))) == ("make -n", "make -n run")
    resume = Command("x", "adautomix train --config runs/a/config.yaml --resume  # needs: run", frozenset({"run"}))
    assert check_of(resume)[0] == "bash -n"
    assert check_of(Command("x", "adautomix train --list-presets", frozenset())) == (
        "run", "adautomix train --list-presets")


def test_the_generated_config_page_lists_every_key_with_its_default():
    from adautomix.config import Config, flatten, to_dict

    page = gen_pages.config_page()
    rows = dict(re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", page, re.M))
    defaults = flatten(to_dict(Config()))
    assert rows.keys() == defaults.keys()
    for key, value in defaults.items():  # the cell reads back as the default (YAML spelling)
        cell = rows[key]
        assert yaml.safe_load(cell) == value or (value == "" and cell == '""') \
            or (isinstance(value, float) and float(cell) == pytest.approx(value, rel=1e-5)), (key, cell, value)
    assert "| `method.n_mix` | `3` | int | N: images mixed per sample |" in page  # the comment beside the field


def test_the_generated_preset_and_method_pages_name_each_preset_and_method():
    from adautomix.methods.registry import METHODS
    from adautomix.presets import PRESETS

    presets, methods = gen_pages.presets_page(), gen_pages.methods_page()
    assert re.findall(r"^## `([\w-]+)`", presets, re.M) == list(PRESETS)
    assert re.findall(r"^\| `(\w+)` \|", methods, re.M) == list(METHODS)


def test_the_front_page_is_the_readme_with_site_links():
    page = gen_pages.index_page()
    assert page.startswith((REPO / "README.md").read_text().splitlines()[0])
    assert "](docs/" not in page
    for uri in ("reference/config.md", "reference/presets.md", "reference/methods.md"):
        assert f"]({uri})" in page, uri
