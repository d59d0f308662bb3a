"""Preprocessing state: fitted on the training split, saved in the run, repeated by predict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InputError


@dataclass
class Preprocessing:
    """Everything needed to turn raw inputs into model inputs, and outputs back into labels."""

    input_shape: list[int]
    task: str  # "classification" | "regression"
    kind: str = (
        "array"  # "array" (numbers), "image" (extra["image"]), "text" (raw strings), "timeseries" (extra["timeseries"])
    )
    scale: float | None = None
    mean: list | None = None  # per feature (nested like one sample), after scaling
    std: list | None = None
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    target_names: list[str] | None = None
    extra: dict = field(default_factory=dict)
    # Raw samples lack the model's trailing channel axis of 1 (input_shape [28, 28, 1] on [28, 28] images, as
    # keras.io writes CNNs); transform adds it. False in runs made before this field existed.
    add_channel_axis: bool = False

    @classmethod
    def fit(
        cls,
        x_train: np.ndarray,
        *,
        input_shape,
        task,
        scale,
        standardize,
        per_channel: bool = False,
        add_channel_axis: bool = False,
        **names,
    ) -> Preprocessing:
        """Fit on the training inputs (mean and std only when ``standardize``).

        Statistics are per input value, or with ``per_channel`` per last-axis
        entry (a time series' features, an image's colours), taken with the
        channel axis added when ``add_channel_axis`` (default False).
        """
        state = cls(input_shape=list(input_shape), task=task, scale=scale, add_channel_axis=add_channel_axis, **names)
        if standardize:
            x = state._scaled(state._with_channel_axis(x_train))
            axes = tuple(range(x.ndim - 1)) if per_channel else 0
            std = x.std(axis=axes, dtype=np.float64)
            std[std == 0] = 1.0  # a constant feature stays constant instead of dividing by zero
            state.mean = x.mean(axis=axes, dtype=np.float64).tolist()
            state.std = std.tolist()
        return state

    def _with_channel_axis(self, x: np.ndarray) -> np.ndarray:
        # Samples that already have the axis (an [n, 28, 28, 1] array, an image read as 28x28x1) stay as they are.
        x = np.asarray(x)
        if self.add_channel_axis and x.ndim == len(self.input_shape):
            return x[..., None]
        return x

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, which preprocess() refuses by row
            x = np.array(x, dtype=np.float32, order="C")  # always a copy: the operations below work in place
        if self.scale is not None:
            x /= np.float32(self.scale)
        return x

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Add the channel axis (if the run adds one), scale and standardize; returns a new C-contiguous float32
        array (texts stay strings)."""
        x = self._with_channel_axis(x)
        if self.kind == "text":
            return np.asarray(x, dtype=object)
        x = self._scaled(x)
        if self.mean is not None:
            mean, std = self._statistics()
            x -= mean
            x /= std
        return x

    def _statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """``mean`` and ``std`` as float32 arrays, converted once: the server transforms every request (a 64-value
        list converted per call was a tenth of its event loop's time per request, py-spy)."""
        cached = self.__dict__.get("_statistics_cache")
        if cached is None or cached[0] is not self.mean or cached[1] is not self.std:
            arrays = np.asarray(self.mean, dtype=np.float32), np.asarray(self.std, dtype=np.float32)
            cached = self.__dict__["_statistics_cache"] = (self.mean, self.std, *arrays)
        return cached[2], cached[3]

    def check_shape(self, x: np.ndarray, where: str) -> None:
        """Raise InputError unless the samples of ``x`` have the model's input shape (or, when the run adds the
        channel axis, that shape without it)."""
        accepted = [list(self.input_shape)] + ([list(self.input_shape[:-1])] if self.add_channel_axis else [])
        if list(x.shape[1:]) not in accepted:
            shapes = " or ".join(str(shape) for shape in accepted)
            raise InputError(
                f"{where}: expected samples of shape {shapes}, received "
                f"{list(x.shape[1:])} (array shape {list(x.shape)})"
            )

    def to_dict(self) -> dict:
        """Plain data for preprocessing.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """Read back what :meth:`to_dict` wrote."""
        return cls(**data)
