"""Value types shared by the config models, and their base class.

Each type checks its value before pydantic does (``BeforeValidator``), so the
message says what was expected in plain words ("expected an integer >= 1").
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError


def integer_at_least(minimum: int):
    def check(value: Any) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and not value.is_integer())
        ):
            raise PydanticCustomError("dltool", f"expected an integer >= {minimum}")
        if value < minimum:
            raise PydanticCustomError("dltool", f"expected an integer >= {minimum}")
        return int(value)

    return check


def _number(minimum_exclusive: float | None = None):
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PydanticCustomError("dltool", "expected a finite number")
        if minimum_exclusive is not None and value <= minimum_exclusive:
            raise PydanticCustomError("dltool", f"expected a number > {minimum_exclusive:g}")
        return float(value)

    return check


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise PydanticCustomError("dltool", "expected a fraction between 0 and 1 (exclusive)")
    return float(value)


def auto_or_bool(value: Any):
    """Accept 'auto', true or false (for Literal['auto'] | bool fields)."""
    if value == "auto" or isinstance(value, bool):
        return value
    raise PydanticCustomError("dltool", "expected auto, true or false")


def fraction_or(*words: str | None):
    """A fraction, or one of ``words`` (None stands for null)."""
    shown = " or ".join("null" if w is None else repr(w) for w in words)

    def check(value: Any):
        if value in words and not isinstance(value, bool):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise PydanticCustomError("dltool", f"expected a fraction between 0 and 1 (exclusive) or {shown}")
        return float(value)

    return check


# The bounds come before the BeforeValidator so that they reach the JSON Schema as minimum/maximum
# (after it, pydantic writes them as "ge"/"lt", which JSON Schema validators ignore).
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(integer_at_least(1))]
NonNegativeInt = Annotated[int, Field(ge=0), BeforeValidator(integer_at_least(0))]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1), BeforeValidator(integer_at_least(0))]
PositiveFloat = Annotated[float, Field(gt=0), BeforeValidator(_number(0.0))]
FiniteFloat = Annotated[float, BeforeValidator(_number())]
Fraction = Annotated[float, Field(gt=0, lt=1), BeforeValidator(_fraction)]


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors; assignment is validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
