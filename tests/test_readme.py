"""The README's set-up commands are what CI runs."""

from __future__ import annotations

import re

from e2e_support import REPO


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    test_command = next(b.strip() for b in _bash_blocks(readme) if "pytest" in b)
    install_and_test = test_command.split("&& ", 2)[2]  # after creating and activating the venv
    ci = (REPO / ".ci" / "run").read_text()
    # .ci/run runs the README's command word for word, pip quietened
    assert install_and_test.replace("pip install -e", "pip install -q -e") in ci
    assert install_and_test == (
        'pip install -e ".[test]" && ruff check . && ruff format --check . && lint-imports && python -m pytest -q'
    )


def test_readme_quickstart_trains_a_shipped_config():
    readme = (REPO / "README.md").read_text()
    quickstart = next(b.strip() for b in _bash_blocks(readme) if "dltool train" in b)
    config = quickstart.rsplit("dltool train ", 1)[1].split()[0]
    assert (REPO / config).is_file()
