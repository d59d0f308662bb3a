"""The experiment config: typed models, YAML loading with line numbers, overrides, plain-words errors.

Every default lives in the pydantic models, once; the resolved config written
into a run is these models dumped back to YAML. Unknown keys are refused
everywhere (``extra="forbid"``). Names that refer to Keras objects are checked
against :mod:`dltool.keras_catalog`, so validation needs no TensorFlow.

Modules: :mod:`.values` (value types), :mod:`.registry` (the data sources),
:mod:`.data` (one model per source), :mod:`.schema` (model, train, experiment;
JSON Schema), :mod:`.yamlio` (safe YAML with lines), :mod:`.loading` (files,
overrides, validation), :mod:`.messages` (pydantic errors in words),
:mod:`.keras_names` (Keras-name checks).
"""

from __future__ import annotations

from .data import DATA_SOURCES, DataCommon, DataConfig
from .expectations import check_expectations, with_expectations
from .keras_names import (
    STRING_INPUT_LAYERS,
    backbone_index,
    backbone_of,
    check_keras_names,
    check_layer,
    layer_name_and_args,
)
from .loading import (
    apply_overrides,
    config_from_text,
    config_to_dict,
    config_to_yaml,
    load_config,
    resolve_paths,
    validate_config,
)
from .registry import SourceEntry, register_source, source_entry, source_names
from .schema import (
    BACKBONE,
    CLASSIFICATION_LOSSES,
    ONE_HOT_LOSSES,
    BackboneConfig,
    Callbacks,
    ExperimentConfig,
    FineTune,
    LayerSpec,
    ModelConfig,
    OptimizerConfig,
    TrainConfig,
    json_schema,
)

__all__ = [
    "BACKBONE",
    "CLASSIFICATION_LOSSES",
    "DATA_SOURCES",
    "ONE_HOT_LOSSES",
    "STRING_INPUT_LAYERS",
    "BackboneConfig",
    "Callbacks",
    "DataCommon",
    "DataConfig",
    "ExperimentConfig",
    "FineTune",
    "LayerSpec",
    "ModelConfig",
    "OptimizerConfig",
    "SourceEntry",
    "TrainConfig",
    "apply_overrides",
    "backbone_index",
    "backbone_of",
    "check_expectations",
    "check_keras_names",
    "check_layer",
    "config_from_text",
    "config_to_dict",
    "config_to_yaml",
    "json_schema",
    "layer_name_and_args",
    "load_config",
    "register_source",
    "resolve_paths",
    "source_entry",
    "source_names",
    "validate_config",
    "with_expectations",
]
