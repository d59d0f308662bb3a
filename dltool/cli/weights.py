"""`dltool weights fetch` and `dltool weights list`: parse, make one library call, print."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import out, reported_errors, say

WEIGHTS_EPILOG = (
    "Example: dltool weights fetch MobileNetV3Small EfficientNetB0   |   dltool weights fetch configs/transfer.yaml"
)

weights_app = typer.Typer(
    help="Pretrained weights in Keras's cache ($KERAS_HOME/models, default ~/.keras/models): fetch, list.",
    no_args_is_help=True,
    epilog="Example: dltool weights fetch MobileNetV3Small   |   dltool weights list",
)


@weights_app.command("fetch", epilog=WEIGHTS_EPILOG)
def weights_fetch(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="NAME|CONFIG",
            help="keras.applications names (their 224x224 weights without the top), or config files (the weights "
            "their Backbone needs, at their input shape).",
        ),
    ],
) -> None:
    """Download imagenet weights into Keras's cache, on a machine with internet; copy the cache to one without."""
    from ..commands.weights import fetch_weights

    with reported_errors():
        fetched = fetch_weights(targets)
    for item in fetched:
        say(f"{item.application}: {item.path} ({item.size / 1e6:.1f} MB, sha256 {item.sha256[:16]}...)")


@weights_app.command("list", epilog="Example: dltool weights list")
def weights_list() -> None:
    """List the weights files in Keras's cache."""
    from ..commands.weights import cached_weights

    with reported_errors():
        folder, files = cached_weights()
    if not files:
        say(f"no weights in {folder}; fetch some with: dltool weights fetch NAME")
        return
    say(f"weights in {folder}:")
    width = max(len(name) for name, _ in files)
    for name, size in files:
        out.print(f"  {name:<{width}}  {size / 1e6:8.1f} MB", highlight=False, markup=False)
