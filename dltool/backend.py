"""The TensorFlow-specific corner: log silencing, versions, device. Everything else uses ``keras``."""

from __future__ import annotations

import os
import platform


def quiet_tensorflow(verbose: bool = False) -> None:
    """Hide TensorFlow's C++ and absl log noise unless ``verbose`` (must run before TF is imported)."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")  # absl's "All log messages before InitializeLog" line
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def versions() -> dict:
    """Versions of everything that shapes a result."""
    import keras
    import numpy
    import tensorflow as tf

    from ._version import __version__

    return {
        "dltool": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
        "numpy": numpy.__version__, "python": platform.python_version(),
    }  # fmt: skip


def device_description() -> str:
    """'GPU: <name>' for the first visible GPU, else 'CPU (<n> cores)'."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)}" + (f" (+{len(gpus) - 1})" if len(gpus) > 1 else "")
    return f"CPU ({os.cpu_count()} cores)"


def import_keras(verbose: bool = False):
    """Import Keras (and TensorFlow) with their start-up chatter on stderr hidden unless ``verbose``.

    TensorFlow's C++ side writes a few lines straight to file descriptor 2
    while it loads, before any Python setting can silence it; they are
    captured and shown only if the import fails.
    """
    quiet_tensorflow(verbose)
    if verbose:
        import keras

        return keras
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return keras
