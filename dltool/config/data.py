"""The ``data:`` section: one config model per data source, each registered with its loader.

To add a source, add its model here under ``@register_source(...)`` and write
its loader module in :mod:`dltool.data` (README: "Adding a data source").
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .registry import register_source, source_entry, source_names
from .values import (
    FiniteFloat,
    Fraction,
    PositiveFloat,
    PositiveInt,
    Seed,
    Strict,
    auto_or_bool,
    fraction_or,
    integer_at_least,
)


class Fold(Strict):
    """One fold of a k-fold cross-validation: the run's test split is fold ``number`` of ``of``."""

    number: PositiveInt = Field(description="This run's fold, counted from 1: its rows are the test split.")
    of: Annotated[int, Field(ge=2), BeforeValidator(integer_at_least(2))] = Field(
        description="The number of folds the labelled data is cut into."
    )
    repeat: PositiveInt = Field(
        1, description="Which reshuffle of the folds (repeated k-fold): repeat r shuffles with seed + r - 1."
    )
    seed: Seed | None = Field(None, description="Seed of the fold shuffle; null: data.split_seed, else the seed.")
    group: str | None = Field(
        None,
        description="csv and parquet: a column whose rows stay in one fold together (a patient, a user); "
        "not a feature unless data.features names it.",
    )

    @model_validator(mode="after")
    def _number_in_range(self):
        if self.number > self.of:
            raise PydanticCustomError(
                "dltool", f"expected a fold number from 1 to {self.of} (of: {self.of}), received number: {self.number}"
            )
        return self


MINORITY, MAJORITY = "minority", "majority"


def _label_text(key: Any) -> str:
    """A class label as the run names its classes: 3 and 3.0 are "3", a string stays as written."""
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


def _factors(word: str, low: float, high: float | None):
    """``word``, or {label: factor} with low <= factor (<= high); labels become text, as the run's class names are."""
    bounds = f">= {low:g}" if high is None else f"between {low:g} (exclusive) and {high:g}"

    def check(value: Any):
        if value == word:
            return value
        if not isinstance(value, dict) or not value:
            raise PydanticCustomError(
                "dltool", f"expected {word} or a mapping {{label: factor}} with factors {bounds}, received {value!r}"
            )
        factors: dict[str, float] = {}
        for key, factor in value.items():
            if isinstance(key, bool) or key is None:
                raise PydanticCustomError("dltool", f"expected class labels as keys, received {key!r}")
            number = not isinstance(factor, bool) and isinstance(factor, (int, float)) and math.isfinite(factor)
            if not number or not (factor >= low if high is None else low < factor <= high):
                raise PydanticCustomError(
                    "dltool", f"label '{_label_text(key)}': expected a factor {bounds}, received {factor!r}"
                )
            label = _label_text(key)
            if label in factors:
                raise PydanticCustomError("dltool", f"label '{label}' is given twice")
            factors[label] = float(factor)
        return factors

    return check


Oversample = Annotated[
    Literal["minority"] | dict[str, Annotated[float, Field(ge=1)]],
    BeforeValidator(
        _factors(MINORITY, 1.0, None),
        json_schema_input_type=Literal["minority"] | dict[str, Annotated[float, Field(ge=1)]],
    ),
]
Undersample = Annotated[
    Literal["majority"] | dict[str, Annotated[float, Field(gt=0, le=1)]],
    BeforeValidator(
        _factors(MAJORITY, 0.0, 1.0),
        json_schema_input_type=Literal["majority"] | dict[str, Annotated[float, Field(gt=0, le=1)]],
    ),
]


class Resample(Strict):
    """``data.resample``: one of oversample or undersample, applied to the training split only."""

    oversample: Oversample | None = Field(
        None,
        description="minority: every class repeated up to the largest class's count; or {label: factor >= 1}: "
        "that class's count times factor (classes not named keep theirs).",
    )
    undersample: Undersample | None = Field(
        None,
        description="majority: every class cut down to the smallest class's count; or {label: factor in (0, 1]}: "
        "that share of the class kept (classes not named keep theirs).",
    )

    @model_validator(mode="after")
    def _one_way(self):
        if (self.oversample is None) == (self.undersample is None):
            raise PydanticCustomError(
                "dltool",
                "expected exactly one of oversample (minority or {label: factor}) or undersample (majority or "
                "{label: factor})",
            )
        return self


class DataCommon(Strict):
    """Keys every source accepts: scaling, standardizing, the test/validation splits and a cv fold."""

    scale: PositiveFloat | None = Field(None, description="Divide every input by this (255 for 8-bit pixels).")
    standardize: bool = Field(
        False, description="Subtract the mean and divide by the std per feature, fitted on the training split only."
    )
    standardize_targets: bool = Field(
        False,
        description="Regression: the model ends in a Rescaling layer by the training targets' std and mean, so "
        "its last layer learns values near 0 while losses, metrics and predictions stay in target units.",
    )
    test: Annotated[Literal["auto", "builtin"] | Fraction, BeforeValidator(fraction_or("auto", "builtin"))] = Field(
        "auto",
        description="'builtin': the dataset's own test split; a fraction: held out with the seed; 'auto': builtin where the dataset has one, else 0.2.",
    )
    validation: Annotated[Literal["test"] | Fraction | None, BeforeValidator(fraction_or("test", None))] = Field(
        0.1, description="A fraction of the training split, 'test' to validate on the test split, or null for none."
    )
    split_seed: Seed | None = Field(
        None, description="Seed of the test/validation split; null means the top-level seed."
    )
    resample: Resample | None = Field(
        None,
        description="Classification: repeat or drop training rows by class (never validation or test), drawn "
        "once with the top-level seed: {oversample: minority | {label: factor}} or {undersample: majority | "
        "{label: factor}}.",
    )
    fold: Fold | None = Field(
        None,
        description="Set by `dltool cv`: the test split is this fold of the labelled data (a source's builtin "
        "test split is left out), and validation is drawn from the other folds as data.validation says.",
    )

    @model_validator(mode="after")
    def _fold_fits_source(self):
        if self.fold is None:
            return self
        source = getattr(self, "source", "")
        if source == "timeseries":
            raise PydanticCustomError(
                "dltool",
                "received fold with data.source 'timeseries': cross-validating a series would train on the "
                "future of its test windows; evaluate a series on its last fraction (data.test) instead",
            )
        if self.fold.group is not None and "split_key" not in type(self).model_fields:
            raise PydanticCustomError(
                "dltool",
                f"grouped folds need a csv or parquet source, received fold.group '{self.fold.group}' with "
                f"data.source '{source}', which has no columns: leave out --group",
            )
        if getattr(self, "stream", None) is True:
            raise PydanticCustomError(
                "dltool",
                "received fold with data.stream: true; cross-validation needs the data in memory: "
                "set data.stream: false (or auto)",
            )
        return self


@register_source(loader="dltool.data.keras_datasets:load")
class KerasData(DataCommon):
    source: Literal["keras"]
    name: Literal["mnist", "fashion_mnist", "cifar10", "cifar100", "boston_housing"]
    path: str | None = Field(
        None,
        description="A local .npz in the Keras layout (x_train, y_train, x_test, y_test) used instead of downloading.",
    )


@register_source(loader="dltool.data.numpy_files:load_npz")
class NpzData(DataCommon):
    source: Literal["npz"]
    path: str = Field(description="An .npz with x_train/y_train (and optionally x_test/y_test), or x/y.")


@register_source(loader="dltool.data.numpy_files:load_npy")
class NpyData(DataCommon):
    source: Literal["npy"]
    x: str = Field(description="An .npy file of inputs.")
    y: str = Field(description="An .npy file of targets, one per input.")


def _list_from_str(value):
    return [value] if isinstance(value, str) else value


TablePath = str | Annotated[list[str], Field(min_length=1)]  # a file, a glob, or a list of files and globs


class TableCommon(DataCommon):
    """Keys of the table sources (csv, parquet): files, columns, the target, and how rows are split."""

    source: str  # each source's Literal; declared here so that source and path come first, as in other sources
    path: TablePath
    target: str = Field(description="The name of the column to predict.")
    features: list[str] | None = Field(
        None, description="Input columns; null means every column but the target, the excluded ones and split_key."
    )
    exclude: Annotated[list[str], BeforeValidator(_list_from_str, json_schema_input_type=list[str] | str)] = Field(
        [],
        description="Columns that are not inputs (a row id, a name): left out of the features, and ignored "
        "when predict, evaluate, export and serve read a file for the run.",
    )
    split_key: str | None = Field(
        None,
        description="A column (an id) whose value decides each row's split: a row keeps its split whatever the "
        "files' order or number. null: the row's file name and row number (a glob or list), or its row number "
        "(one file).",
    )

    @field_validator("exclude")
    @classmethod
    def _exclude_not_used(cls, exclude, info):
        # A column is an input, the target, or excluded: one role each, so a typo cannot hide a feature.
        target, features = info.data.get("target"), info.data.get("features") or []
        for name in exclude:
            if name == target:
                raise PydanticCustomError(
                    "dltool", f"'{name}' is the target column (data.target); remove it from data.exclude"
                )
            if name in features:
                raise PydanticCustomError(
                    "dltool",
                    f"'{name}' is also listed in data.features; a column is either a feature or excluded: "
                    "remove it from one of the two",
                )
        return exclude

    sample_weight: str | None = Field(
        None,
        description="A numeric column weighing each training row's loss (>= 0, not all zero): never a feature, "
        "ignored by predict and evaluate; validation and test metrics stay unweighted.",
    )

    @field_validator("sample_weight")
    @classmethod
    def _weight_column_role(cls, column, info):
        # One role per column: the weight is neither an input, the target, the split key nor excluded.
        if column is None:
            return column
        roles = {
            "the target column (data.target)": [info.data.get("target")],
            "listed in data.features": info.data.get("features") or [],
            "listed in data.exclude": info.data.get("exclude") or [],
            "the split key (data.split_key)": [info.data.get("split_key")],
        }
        for role, names in roles.items():
            if column in names:
                raise PydanticCustomError(
                    "dltool", f"'{column}' is {role}; the sample weight is a column of its own, used for nothing else"
                )
        return column

    @field_validator("split_key")
    @classmethod
    def _split_key_not_target(cls, split_key, info):
        if split_key is not None and split_key == info.data.get("target"):
            raise PydanticCustomError(
                "dltool", f"'{split_key}' is the target column; the split key is a column that identifies a row (an id)"
            )
        return split_key

    @model_validator(mode="after")
    def _group_not_target(self):
        if self.fold is not None and self.fold.group == self.target:
            raise PydanticCustomError(
                "dltool",
                f"received fold.group '{self.target}', the target column; the group is a column whose rows "
                "belong together (an id: a patient, a user)",
            )
        return self


@register_source(
    loader="dltool.data.csv_source:load",
    preprocessing="dltool.data.table_files:preprocessing_kind",
    streamer="dltool.data.streaming:prepare_streamed",
    stream_auto="dltool.data.streaming:large_file",
)
class CsvData(TableCommon):
    source: Literal["csv"]
    path: TablePath = Field(
        description="A CSV file with a header row, a glob (data/part-*.csv) or a list of files and globs; several "
        "files are read in sorted order and must have the same columns."
    )
    delimiter: str = Field(",", min_length=1, max_length=1)
    stream: Annotated[Literal["auto"] | bool, BeforeValidator(auto_or_bool)] = Field(
        "auto",
        description="Read the CSV from disk batch by batch (tf.data) instead of into memory: "
        "true, false, or auto (files over 1 GiB in all).",
    )


@register_source(
    loader="dltool.data.parquet_source:load",
    preprocessing="dltool.data.table_files:preprocessing_kind",
    streamer="dltool.data.streaming:prepare_streamed",
    stream_auto="dltool.data.streaming:large_file",
)
class ParquetData(TableCommon):
    source: Literal["parquet"]
    path: TablePath = Field(
        description="A Parquet file, a glob (data/part-*.parquet) or a list of files and globs; several files "
        "are read in sorted order and must have the same columns. Needs pyarrow (the parquet extra)."
    )
    stream: Annotated[Literal["auto"] | bool, BeforeValidator(auto_or_bool)] = Field(
        "auto",
        description="Read the files from disk record batch by record batch (tf.data) instead of into memory: "
        "true, false, or auto (files over 1 GiB in all).",
    )


@register_source(loader="dltool.data.sklearn_datasets:load")
class SklearnData(DataCommon):
    source: Literal["sklearn"]
    name: Literal["iris", "digits", "wine", "breast_cancer", "diabetes"]


class Noise(Strict):
    distribution: Literal["normal", "uniform"] = "normal"
    std: FiniteFloat = Field(1.0, ge=0, description="normal: the standard deviation (mean 0).")
    low: FiniteFloat = Field(0.0, description="uniform: the lower bound.")
    high: FiniteFloat = Field(1.0, description="uniform: the upper bound.")

    @model_validator(mode="after")
    def _bounds(self):
        if self.distribution == "uniform" and self.low >= self.high:
            raise PydanticCustomError("dltool", f"expected low < high, received low={self.low:g}, high={self.high:g}")
        return self


@register_source(loader="dltool.data.synthetic:load")
class SyntheticData(DataCommon):
    source: Literal["synthetic"]
    generator: Literal["linear", "regression"] = Field(
        "linear",
        description="linear: y = x·weights + bias + noise, x ~ U(0, 1); regression: scikit-learn make_regression.",
    )
    n_samples: PositiveInt = 100
    n_features: PositiveInt = 1
    weights: list[FiniteFloat] | FiniteFloat = Field(1.0, description="linear: one weight per feature, or one for all.")
    bias: FiniteFloat = 0.0
    noise: Noise = Field(default_factory=Noise)
    seed: Seed | None = Field(None, description="Seed of the generator; null means the top-level seed.")

    @field_validator("weights")
    @classmethod
    def _weights_fit(cls, weights, info):
        n_features = info.data.get("n_features")
        if isinstance(weights, list) and n_features is not None and len(weights) != n_features:
            raise PydanticCustomError(
                "dltool", f"expected one weight per feature ({n_features}), received {len(weights)} weights"
            )
        return weights


def _pair_from_int(value):
    return [value, value] if isinstance(value, int) and not isinstance(value, bool) else value


_Pair = Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]
ImageSize = Annotated[
    _Pair, BeforeValidator(_pair_from_int, json_schema_input_type=_Pair | PositiveInt)
]  # 64: [64, 64]


@register_source(
    loader="dltool.data.images:load",
    preprocessing="dltool.data.images:preprocessing_kind",
    streamer="dltool.data.image_stream:prepare_streamed_images",
    stream_auto="dltool.data.image_stream:large_folder",
)
class ImageData(DataCommon):
    source: Literal["images"]
    path: str = Field(description="A folder with one subfolder of images per class (png, jpg, jpeg, bmp, gif).")
    image_size: ImageSize = Field(
        [256, 256], description="[height, width] every image is resized to (one number: square)."
    )
    color_mode: Literal["grayscale", "rgb", "rgba"] = Field("rgb", description="Channels: grayscale 1, rgb 3, rgba 4.")
    interpolation: Literal["bilinear", "nearest", "bicubic", "lanczos"] = "bilinear"
    classes: list[str] | None = Field(
        None, description="The class subfolders to use, in label order; null: every subfolder, sorted."
    )
    stream: Annotated[Literal["auto"] | bool, BeforeValidator(auto_or_bool)] = Field(
        "auto",
        description="Decode the images batch by batch each epoch, on parallel threads, instead of all into memory "
        "first: true, false, or auto (when their uint8 and float32 pixels would take more than a quarter of "
        "this machine's memory or 4 GiB).",
    )
    cache: Literal["none", "memory", "disk"] = Field(
        "none",
        description="Streamed: keep the resized uint8 images after they are first decoded, in memory or on disk "
        "(one folder per file list and image settings under $DLTOOL_CACHE_DIR, else ~/.cache/dltool/images; "
        "later runs reuse it). disk also spares a folder loaded into memory its decoding.",
    )
    on_bad_file: Literal["fail", "skip"] = Field(
        "fail",
        description="An image file that cannot be read: fail names it and stops; skip leaves it out, and the "
        "run log counts and names such files.",
    )


@register_source(loader="dltool.data.text:load", preprocessing="dltool.data.text:preprocessing_kind")
class TextData(DataCommon):
    source: Literal["text"]
    path: str | None = Field(None, description="A CSV with a text column and a label column.")
    dataset: Literal["imdb"] | None = Field(
        None, description="Instead of path: keras.datasets.imdb, decoded back to review texts."
    )
    text: str = Field("text", description="The column holding the texts.")
    target: str = Field("label", description="The column holding the labels (or numbers, for a regression loss).")
    delimiter: str = Field(",", min_length=1, max_length=1)

    @model_validator(mode="after")
    def _one_origin(self):
        if (self.path is None) == (self.dataset is None):
            raise PydanticCustomError("dltool", "expected exactly one of path (a CSV) or dataset (imdb)")
        if self.scale is not None or self.standardize:
            raise PydanticCustomError(
                "dltool",
                "texts cannot be scaled or standardized: remove scale and standardize "
                "(a TextVectorization layer in model.layers turns texts into numbers)",
            )
        return self


_Columns = Annotated[list[str], Field(min_length=1)]
Columns = Annotated[_Columns, BeforeValidator(_list_from_str, json_schema_input_type=_Columns | str)]  # a: [a]


@register_source(loader="dltool.data.timeseries:load", preprocessing="dltool.data.timeseries:preprocessing_kind")
class TimeseriesData(DataCommon):
    source: Literal["timeseries"]
    path: str = Field(description="A CSV with one row per time step, oldest first, and a header row.")
    target: Columns = Field(description="The column(s) to forecast: one name or a list.")
    features: list[str] | None = Field(None, description="Input columns; null means the target column(s) themselves.")
    window: PositiveInt = Field(description="Time steps of history in each input window.")
    horizon: PositiveInt = Field(1, description="Forecast this many steps after the window's last step.")
    stride: PositiveInt = Field(1, description="Steps between the starts of consecutive training windows.")
    delimiter: str = Field(",", min_length=1, max_length=1)


# Built from the registry, so a registered model is a valid `data:` without being listed again.
_SOURCE_MODELS = tuple(source_entry(name).config for name in source_names())
DataConfig = Annotated[Union[_SOURCE_MODELS], Field(discriminator="source")]  # noqa: UP007  (built at runtime)
DATA_SOURCES = source_names()
