"""The docs are code: generated pages are current, every command has a section, every console example runs.

A ```console block holds `$ command` lines, each followed by the output it prints. The tests run each page's
blocks in order in a fresh folder (a copy of configs/ and the files in tests/data/docs/) and compare what
they print with what the page shows: a line `...` stands for any number of lines, `...` inside a line for
any text; run ids, dates, timings, core counts and the folder's path are normalised, and numbers agree to
1 % (float noise between machines). A command shown without output is only checked to succeed; one whose
output starts with `error:` must exit 2. A block is left out only behind `<!-- test: skip (why) -->`, and
`<!-- test: output not compared (why) -->` checks the exit code alone.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from e2e_support import REPO

DOCS = REPO / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md"))
FIXTURES = REPO / "tests" / "data" / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------ generated pages


def test_the_command_reference_is_current():
    generate = _generator()
    assert generate.COMMANDS_PAGE.read_text(encoding="utf-8") == generate.commands_page(), (
        "docs/reference/commands.md is out of date: regenerate it with `python docs/generate.py`"
    )


def test_the_config_reference_is_current():
    generate = _generator()
    assert generate.CONFIG_PAGE.read_text(encoding="utf-8") == generate.config_page(), (
        "docs/reference/config.md is out of date: regenerate it with `python docs/generate.py`"
    )


def test_every_command_has_a_section_with_its_example():
    generate = _generator()
    page = generate.COMMANDS_PAGE.read_text(encoding="utf-8")
    names = generate.command_names()
    assert {"dltool train", "dltool runs show", "dltool serve", "dltool sweep"} <= set(names)
    for name in names:
        assert f"\n## {name}\n" in page, name
    assert page.count("Examples:\n\n```bash\n") == len(names) - 1  # every command but the bare `dltool`


def test_the_config_reference_has_every_key_and_source():
    page = _generator().config_page()
    for key in ("name", "train.callbacks.early_stopping.patience", "train.devices", "expect", "data.window"):
        assert f"| `{key}` |" in page, key
    for source in ("keras", "npz", "npy", "csv", "parquet", "sklearn", "synthetic", "images", "text", "timeseries"):
        assert f"\n### {source}\n" in page, source


def test_every_page_and_results_file_is_in_the_site_nav():
    # mkdocs --strict (CI) refuses a page left out of the nav; a new benchmarks/RESULTS-*.md is the usual one
    import yaml

    def listed(entries):
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from listed(value) if isinstance(value, list) else [value]

    nav = set(listed(yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    pages |= {f"benchmarks/{p.name}" for p in (REPO / "benchmarks").glob("*.md")}
    assert sorted(pages - nav) == [], "add these pages to mkdocs.yml's nav"


def test_the_data_pages_examples_for_images_text_and_time_series_validate():
    from dltool.config import config_from_text

    page = (DOCS / "data.md").read_text(encoding="utf-8")
    section = page.split("## Images, text and time series", 1)[1]
    examples = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    configs = [config_from_text(text, source="docs/data.md") for text in examples if text.startswith("name:")]
    assert [c.data.source for c in configs] == ["images", "text", "timeseries"]


# ------------------------------------------------------------------------------------ console examples


@dataclass
class Command:
    line: str
    output: list[str] = field(default_factory=list)


@dataclass
class Block:
    page: str
    line: int
    commands: list[Command]
    skip: str | None = None
    compare: bool = True


MARKER = re.compile(r"<!-- test: (skip|output not compared) \((.+?)\) -->\n$")


def console_blocks(path: Path) -> list[Block]:
    """The page's ```console blocks, each with its commands, their shown output and its test marker."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"```console\n(.*?)```", text, flags=re.S):
        before = text[: match.start()]
        marker = MARKER.search(before)
        block = Block(path.name, before.count("\n") + 1, [])
        if marker and marker.group(1) == "skip":
            block.skip = marker.group(2)
        elif marker:
            block.compare = False
        for line in match.group(1).splitlines():
            if line.startswith("$ "):
                block.commands.append(Command(line[2:]))
            elif block.commands:
                block.commands[-1].output.append(line)
        blocks.append(block)
    return blocks


RUN_ID = re.compile(r"\b\d{8}-\d{6}-[A-Za-z0-9._-]+?-[0-9a-f]{4}\b")
TIMES = [
    (re.compile(r"\(\d+(\.\d+)?s\)"), "(T)"),  # an epoch's seconds
    (re.compile(r"\b\d+(\.\d+)? ?s\b"), "T"),  # "in 3.3s", "0.06 s"
    (re.compile(r"\(\d+ cores?\)"), "(N cores)"),
]
NUMBER = re.compile(r"[-+]?\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+")


def normalise(text: str, folder: str) -> str:
    """Volatile bits made equal: run ids, timings, core counts, the temporary folder's path."""
    if folder:
        text = text.replace(folder, "/tmp/readme")
    text = RUN_ID.sub("RUN", text)
    for pattern, replacement in TIMES:
        text = pattern.sub(replacement, text)
    return text


def _numbers_agree(shown: str, actual: str) -> bool:
    a, b = float(shown), float(actual)
    return abs(a - b) <= 0.01 * max(abs(a), abs(b)) or abs(a - b) <= 1e-6


def output_matches(shown: list[str], actual: str) -> bool:
    """Whether the actual output fits the shown lines: `...` wildcards, numbers within 1 %."""
    numbers = []

    def line_pattern(line: str) -> str:
        if line.strip() == "...":
            return r"(?:[^\n]*\n)*?"
        pieces = []
        for i, text in enumerate(line.rstrip().split("...")):
            if i:
                pieces.append(r"[^\n]*?")
            last = 0
            for number in NUMBER.finditer(text):
                numbers.append(number.group())
                pieces += [re.escape(text[last : number.start()]), f"(?P<n{len(numbers) - 1}>{NUMBER.pattern})"]
                last = number.end()
            pieces.append(re.escape(text[last:]))
        return "".join(pieces) + r"[ \t]*\n"

    pattern = "".join(line_pattern(line) for line in shown)
    lines = [line.rstrip() for line in actual.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    match = re.fullmatch(pattern, "".join(line + "\n" for line in lines))
    return bool(match) and all(_numbers_agree(n, match.group(f"n{i}")) for i, n in enumerate(numbers))


def test_the_matcher_takes_wildcards_and_volatile_bits():
    shown = ["run 20261124-020202-digits-mlp-ddc5: CPU (2 cores)", "...", "loss=0.1061 (0.71s)", "done ..."]
    actual = "run 20261202-182037-digits-mlp-d282: CPU (16 cores)\nepoch 1\nepoch 2\nloss=0.1062 (1.20s)\ndone in 4 s\n"
    assert output_matches([normalise(s, "") for s in shown], normalise(actual, ""))
    assert not output_matches(["loss=0.1061"], "loss=0.1161\n")  # 9 % apart
    assert not output_matches(["a", "b"], "a\nc\n")
    assert not output_matches(["a"], "a\nextra\n")  # no `...`, no extra lines
    assert output_matches(["error: x.yaml:14: ..."], "error: x.yaml:14: bad\n")


def _all_blocks() -> list[Block]:
    return [block for page in PAGES for block in console_blocks(page)]


def test_every_console_block_runs_or_says_why_not():
    blocks = _all_blocks()
    assert len(blocks) >= 10
    for block in blocks:
        assert block.skip or block.commands, f"docs/{block.page}:{block.line}: no `$ ` command and no skip marker"
    skipped = [b for b in blocks if b.skip]
    assert len(skipped) <= 6, [f"{b.page}:{b.line}" for b in skipped]  # skips stay few


def test_the_readme_sample_is_the_home_pages():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    (sample,) = re.findall(r"```console\n.*?```", readme, flags=re.S)
    assert sample in index  # so the run of the home page's examples checks the README's too
    assert len(readme.splitlines()) <= 210


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "readme"
    shutil.copytree(REPO / "configs", folder / "configs")
    for fixture in FIXTURES.iterdir():
        shutil.copy(fixture, folder / fixture.name)
    # A stand-in for the real MNIST file the errors page points at: its shapes, zeros for pixels.
    np.savez_compressed(
        folder / "mnist.npz",
        x_train=np.zeros((60000, 28, 28), np.uint8),
        y_train=np.arange(60000, dtype=np.uint8) % 10,
        x_test=np.zeros((10000, 28, 28), np.uint8),
        y_test=np.arange(10000, dtype=np.uint8) % 10,
    )
    return folder


def _run(command: str, folder: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DLTOOL_RUNS_DIR", "KERAS_BACKEND", "GITHUB_ACTIONS")}
    env.update(NO_COLOR="1", PYTHONPATH=str(REPO), COLUMNS="200")
    env.pop("GITHUB_STEP_SUMMARY", None)
    # `dltool` is this checkout's, whatever is installed
    shell = f'dltool() {{ "{sys.executable}" -m dltool "$@"; }}\n{command}\n'
    return subprocess.run(
        ["bash", "-c", shell], cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False
    )


RUNNABLE = [page for page in PAGES if any(not b.skip and b.commands for b in console_blocks(page))]


def _needs(page: Path) -> list[pytest.MarkDecorator]:
    """The markers of what a page's examples need: a backend their commands or the shipped configs they train
    name (jax, torch), several processes at once (multiprocess)."""
    commands = "\n".join(c.line for b in console_blocks(page) if not b.skip for c in b.commands)
    configs = "\n".join(
        (REPO / path).read_text(encoding="utf-8")
        for path in re.findall(r"configs/[\w./-]+\.ya?ml", commands)
        if (REPO / path).is_file()
    )
    marks = [
        getattr(pytest.mark, backend)
        for backend in ("jax", "torch")
        if f"--backend {backend}" in commands or f"backend: {backend}" in configs
    ]
    return marks + ([pytest.mark.multiprocess] if re.search(r"dltool launch|--workers", commands) else [])


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("page", [pytest.param(p, marks=_needs(p), id=p.name) for p in RUNNABLE])
def test_the_pages_console_examples_print_what_they_show(page, tmp_path):
    folder = _folder(tmp_path)
    for block in console_blocks(page):
        if block.skip:
            continue
        for command in block.commands:
            result = _run(command.line, folder)
            where = f"docs/{page.name}:{block.line}: $ {command.line}"
            printed = result.stdout + result.stderr
            expected = 2 if command.output and command.output[0].startswith("error:") else 0
            assert result.returncode == expected, f"{where}\nexit {result.returncode}\n{printed}"
            if block.compare and command.output:
                shown = [normalise(line, str(folder)) for line in command.output]
                assert output_matches(shown, normalise(printed, str(folder))), (
                    f"{where}\nshown:\n" + "\n".join(command.output) + f"\nprinted:\n{printed}"
                )
