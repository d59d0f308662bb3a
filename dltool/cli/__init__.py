"""The command line: the Typer app (`app`), one module per command group, and `display/` (everything printed).

Inner order, checked by lint-imports: app -> the command-group modules -> display -> common.
"""

from __future__ import annotations


def main() -> None:
    """Run the `dltool` command (the console script's entry point, `dltool.cli:main`).

    The app is imported here, not at module level, so that importing `dltool.cli.common` or
    `dltool.cli.display` does not build the whole Typer app.
    """
    from .app import main as run_app

    run_app()
