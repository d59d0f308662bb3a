"""`dltool info`: what a bug report needs (versions, backend, devices, XLA, optional packages)."""

from __future__ import annotations

import json

from .common import AsJson, Backend, Verbose, out, reported_errors, say

INFO_EPILOG = "Example: dltool info   |   dltool info --backend jax --json"


def info(backend: Backend = None, as_json: AsJson = False, verbose: Verbose = False) -> None:
    """Print dltool's, Keras's and the backend's versions, the devices the backend sees, and what is installed."""
    import os

    from ..backend import import_keras
    from ..system_info import OPTIONAL_PACKAGES, system_info

    chosen_by = "--backend" if backend else "KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") else "the default"
    with reported_errors():
        import_keras(verbose, backend=backend)
        report = {**system_info(), "backend_chosen_by": chosen_by}
    if as_json:
        out.print_json(json.dumps(report))
        return
    versions = report["versions"]
    say(f"dltool {versions['dltool']}, Keras {versions['keras']}, Python {versions['python']} on {report['platform']}")
    say(
        f"backend: {report['backend']} {report['backend_version'] or ''} (chosen by {report['backend_chosen_by']}); "
        + (
            f"TensorFlow {versions['tensorflow']}"
            if report["backend"] == "tensorflow"
            else f"TensorFlow {versions['tensorflow']} (for tf.data, when the data need it)"
        )
        + f"; NumPy {versions['numpy']}"
    )
    say(f"XLA: {report['xla']}; dtype policy: {report['mixed_precision_policy']}")
    auto = report["precision_auto"]
    say(f"train.precision auto picks {auto['policy']}: {auto['reason']}")
    say(f"devices ({report['cpu_cores']} CPU cores):")
    for device in report["devices"]:
        memory = f", {device['memory_mb']:,} MB" if device.get("memory_mb") else ""
        say(f"  {device['kind']}: {device['name']}{memory}")
    if not any(d["kind"] == "GPU" for d in report["devices"]):
        say("  no GPU visible")
    installation = report["installation"]
    say(f"installed: {installation['from']}")
    say("optional packages:")
    for module, extra in OPTIONAL_PACKAGES.items():
        version = report["optional"][module]
        say(f"  {module}: {version or 'not installed'} ({extra})")
    if installation["install_missing"]:
        say(f"missing extras ({', '.join(installation['missing_extras'])}): {installation['install_missing']}")
