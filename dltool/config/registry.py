"""The registry of data sources: one entry per ``data.source``, the only list of them.

An entry ties a source's name to its config model (validated here, without
importing any data code) and names, as ``"module:function"`` strings, the
loader and the preprocessing hook that :mod:`dltool.data` imports only when
data is loaded. Register a model with :func:`register_source`; the config's
``data:`` union, the did-you-mean on ``data.source`` and the loaders all read
this registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from pydantic import BaseModel


@dataclass(frozen=True)
class SourceEntry:
    """One data source: its name, its config model and where its data code lives."""

    name: str
    config: type[BaseModel]
    loader: str  # "module:function" called as function(data_config, seed=, classification=) -> RawData
    preprocessing: str | None = None  # "module:function" giving Preprocessing.fit's kind and extra; None: arrays
    # "module:function" called as function(config) -> a TrainingData read from disk batch by batch, and
    # "module:function" called as function(data_config) -> bool, what ``data.stream: auto`` decides. None: the
    # source is always loaded into memory.
    streamer: str | None = None
    stream_auto: str | None = None


_SOURCES: dict[str, SourceEntry] = {}


def register_source(
    *, loader: str, preprocessing: str | None = None, streamer: str | None = None, stream_auto: str | None = None
):
    """Class decorator: register a data config model under the name its ``source: Literal[...]`` field gives.

    A source that can be streamed names its ``streamer`` and its ``stream_auto`` decision, and its model has a
    ``stream: auto | true | false`` key.
    """

    def register(model: type[BaseModel]) -> type[BaseModel]:
        (name,) = get_args(model.model_fields["source"].annotation)
        if name in _SOURCES:
            raise ValueError(
                f"data source {name!r} is registered twice ({_SOURCES[name].config.__name__}, {model.__name__})"
            )
        _SOURCES[name] = SourceEntry(
            name=name,
            config=model,
            loader=loader,
            preprocessing=preprocessing,
            streamer=streamer,
            stream_auto=stream_auto,
        )
        return model

    return register


def source_names() -> list[str]:
    """The registered source names, in registration order."""
    return list(_SOURCES)


def source_entry(name: str) -> SourceEntry:
    """The registry entry of source ``name`` (KeyError if none)."""
    return _SOURCES[name]
