"""`dltool smoke`, and the CI outputs `train` shares with it: a JUnit file, a GitHub step summary. Parse, call, print."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from .common import JUnitFile, RunsDir, Verbose, out, reported_errors, say

SMOKE_EPILOG = (
    "Example: dltool smoke configs/ --fake-data --junit smoke.xml   |   dltool smoke configs/smoke.yaml "
    "--epochs 2 --samples 64"
)


def smoke(
    paths: Annotated[
        list[Path], typer.Argument(metavar="CONFIG|DIR", help="Config files, or folders whose *.yaml configs to test.")
    ],
    epochs: Annotated[int, typer.Option("--epochs", metavar="N", help="Epochs to train each config.")] = 1,
    samples: Annotated[
        int, typer.Option("--samples", metavar="N", help="Training samples kept of each config's data (at random).")
    ] = 256,
    fake_data: Annotated[
        bool,
        typer.Option(
            "--fake-data",
            metavar="",
            help="Random data of the shapes and classes each config declares, instead of its own (no downloads).",
        ),
    ] = False,
    keep_runs: Annotated[
        bool,
        typer.Option(
            "--keep-runs", metavar="", help="Keep the run folders (in --runs-dir) instead of a temporary folder."
        ),
    ] = False,
    expect_from_configs: Annotated[
        bool,
        typer.Option(
            "--expect-from-configs", metavar="", help="Check each config's expect: section (exit 3 when one is missed)."
        ),
    ] = False,
    junit: JUnitFile = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print the results as JSON.")] = False,
    runs_dir: RunsDir = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            metavar="tensorflow|jax|torch",
            help="Train every config on this Keras backend (a config it cannot run is skipped) [default: the configs' own].",
            show_default=False,
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Smoke-test configs in one process (one per Keras backend): validate, train briefly, evaluate, save, reload, predict.

    Exits 0 when every config passes or is skipped, 1 when any fails, 3 when any misses its expectations (--expect-from-configs), 2 for usage errors. Without --fake-data, a config whose data needs a download or a missing file is skipped.
    """  # noqa: E501  (one paragraph: rich wraps it)
    from ..backend import import_keras
    from ..commands.smoke import config_backends, find_configs
    from ..commands.smoke import smoke as run_smoke
    from ..fileio import check_output_file
    from .display.reports import smoke_line, smoke_table

    with reported_errors():
        if junit is not None:
            check_output_file(junit, "JUnit report", "--junit")
        find_configs(paths)  # a usage error is reported before TensorFlow starts
        # This process takes the backend most configs train on; the others run in processes of their own.
        named = list(config_backends(paths).values()) if backend is None else [backend]
        import_keras(verbose, backend=max(sorted(set(named)), key=named.count) if named else None)
        report = run_smoke(
            paths,
            epochs=epochs,
            samples=samples,
            fake_data=fake_data,
            keep_runs=keep_runs,
            runs_root=runs_dir,
            expect_from_configs=expect_from_configs,
            backend=backend,
            on_result=None if as_json else lambda result: say(smoke_line(result.to_dict())),
        )
    results = report.to_dict()
    _ci_outputs(junit, report.junit_cases(), _smoke_summary(results), package="dltool.smoke")
    _annotate(
        [
            (r["message"].removeprefix(f"{r['file']}:{r['line']}: "), r["file"], r["line"])
            for r in results["configs"]
            if r["status"] == "failed"
        ]
    )
    if as_json:
        out.print_json(json.dumps(results))
    else:
        out.print(smoke_table(results))
    raise typer.Exit(report.exit_code)


def _smoke_summary(results: dict) -> str:
    from ..reports import markdown_table

    rows = [
        [
            r["config"],
            r["status"],
            f"{r['seconds']:.1f}",
            "" if r["status"] == "passed" else f"{r['stage']}: {r['message']}",
        ]
        for r in results["configs"]
    ]
    counts = ", ".join(f"{results[s]} {s}" for s in ("passed", "failed", "unmet", "skipped"))
    return f"### dltool smoke: {counts} in {results['seconds']:.1f}s\n\n" + markdown_table(
        ["config", "status", "seconds", "what failed"], rows
    )


def _ci_outputs(junit: Path | None, cases: list, summary: str, package: str) -> None:
    """Write the JUnit file (when asked) and append to the GitHub step summary (when $GITHUB_STEP_SUMMARY is set)."""
    from ..reports import append_step_summary, write_junit

    if junit is not None:
        write_junit(junit, cases, package=package)
    append_step_summary(summary)


def _annotate(errors: list[tuple[str, str | None, int | None]]) -> None:
    """In GitHub Actions, print each error as an annotation on its config file and line."""
    from ..reports import github_annotation, in_github_actions, is_file_source

    if in_github_actions():
        for message, file, line in errors:
            say(github_annotation(message, file, line) if is_file_source(file) else github_annotation(message))


@contextmanager
def train_reports(junit: Path | None, name: str):
    """Around `dltool train`: on success or failure, the JUnit file and the step summary of the run.

    Yields a dict; the command puts the finished run under "run". An error is reported as a failed testcase
    (and raised on); a config error's annotation is reported_errors' job.
    """
    from ..errors import DltoolError
    from ..fileio import check_output_file
    from ..reports import error_case, markdown_table, run_case

    if junit is not None:
        check_output_file(junit, "JUnit report", "--junit")
    state: dict = {}
    start = time.perf_counter()
    try:
        yield state
    except DltoolError as exc:
        run = getattr(exc, "run", None)
        case = (
            run_case(run, name)
            if run is not None
            else error_case(name, "dltool.train", exc, time.perf_counter() - start)
        )
        case.failure = str(exc)
        _ci_outputs(junit, [case], f"### dltool train {name}: failed\n\n{exc}\n", package="dltool.train")
        raise
    case = run_case(state["run"], name)
    rows = [[key, f"{value:.4g}" if isinstance(value, float) else value] for key, value in case.properties.items()]
    verdict = "passed" if case.failure is None else f"failed: {case.failure}"
    _ci_outputs(
        junit,
        [case],
        f"### dltool train {name}: {verdict}\n\n" + markdown_table(["", ""], rows),
        package="dltool.train",
    )
