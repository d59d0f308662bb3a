"""What `dltool export` shows: the verified artifact, its figures, and how to serve or load it."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .training import format_value


def export_lines(record: dict, serving: tuple[str, str] | None) -> list[str]:
    """The lines `dltool export` prints for a verified export (with the docker and curl lines for saved_model)."""
    fmt = record["format"]
    lines = [
        f"exported {fmt}: {record['path']}",
        f"verified: max abs difference {record['max_abs_diff']:.3g} from model.keras"
        f"{' in float32' if record.get('computes_in') else ''}, {_used(record)} of the "
        f"allowed difference (rtol {record['rtol']:g}, atol {record['atol']:g}) on {record['samples']} samples "
        f"of the {_data(record)}, {record['runtime']} {record['runtime_version']}, {record['seconds']:.2f} s",
        f"input: raw samples of shape {_shape(record)} ({record['input']['dtype']}); the run's preprocessing is "
        "inside the model",
    ]
    if record.get("computes_in"):
        lines.append(
            f"computes in {record['computes_in']}: the run trained in {record['trained_in']}, which {fmt} cannot hold; "
            f"its float32 copy is what was exported and verified, {record['max_abs_diff_from_trained']:.3g} at most "
            "from the model as trained (16-bit rounding)"
        )
    if record.get("left_out"):
        lines.append(f"left out (identity at inference): {', '.join(record['left_out'])}")
    if fmt == "onnx":
        lines.append(f"ONNX opset {record['opset']}; load it with onnxruntime.InferenceSession")
    if fmt == "litert":
        one = record.get("batch") == 1
        lines.append(
            "built-in LiteRT ops only (no Flex ops): runs in the standalone ai-edge-litert interpreter"
            + ("; recurrent layers: one sample per call (batch 1)" if one else "")
        )
    if serving is not None:
        docker, curl = serving
        lines += ["serve it with TensorFlow Serving:", f"  {docker}", "then ask it for a prediction:", f"  {curl}"]
    return lines


def _used(record: dict) -> str:
    """The worst output's share of its allowed difference, in percent ('' for records older than rtol/atol)."""
    used = record.get("tolerance_used")
    return "" if used is None else f"{100 * used:.3g}%"


def _data(record: dict) -> str:
    return "run's test split" if record["data"] == "test split" else f"file {record['data']}"


def _shape(record: dict) -> str:
    batch = record.get("batch")
    shape = [batch if batch else "batch", *record["input"]["shape"][1:]]
    return "[" + ", ".join(str(v) for v in shape) + "]"


def _shown_path(path: str, run_path: str | None) -> str:
    """A path inside the run folder relative to it (the table stays narrow), any other path as it is."""
    if run_path and path.startswith(run_path.rstrip("/") + "/"):
        return path[len(run_path.rstrip("/")) + 1 :]
    return path


def exports_table(records: list[dict], run_path: str | None = None) -> Table:
    """`runs show`: one line per verified export: format, path, runtime, max abs difference (and its share of the
    allowed difference), samples, seconds."""
    table = Table(title="exports (dltool export)", title_justify="left")
    numbers = ("max abs diff", "of allowed", "samples", "verify s")
    for column in ("format", "path", "runtime", "max abs diff", "of allowed", "samples", "verify s", "created"):
        table.add_column(column, justify="right" if column in numbers else "left")
    for record in records:
        runtime = f"{record.get('runtime', '')} {record.get('runtime_version', '')}".strip()
        if record.get("opset"):
            runtime += f" (opset {record['opset']})"
        table.add_row(
            str(record.get("format", "")),
            _shown_path(str(record.get("path", "")), run_path),
            runtime,
            format_value(record.get("max_abs_diff")),
            _used(record),
            str(record.get("samples", "")),
            format_value(record.get("seconds")),
            str(record.get("created", ""))[:19],
        )
    return table


def print_export(console: Console, record: dict, serving: tuple[str, str] | None) -> None:
    """Print :func:`export_lines` as plain text."""
    for line in export_lines(record, serving):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
