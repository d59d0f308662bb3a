"""What processes 1..N-1 do during a fit: their failures name the worker and the cause."""

from __future__ import annotations

import pytest

from dltool.distributed import ProcessGroup
from dltool.errors import DataError, TrainingError
from dltool.runs import Run
from dltool.training import fitting
from dltool.training.followers import follow


class _Worker(ProcessGroup):
    size, rank = 2, 1


class _StreamedData:
    failure = None


def test_a_worker_stopped_by_an_unreadable_file_says_which_file_not_tensorflow_s_wrapper(tmp_path, monkeypatch):
    data = _StreamedData()

    def fit(*args, **kwargs):
        data.failure = DataError("photos/cat/3.png: cannot read as an image (UnidentifiedImageError)")
        raise RuntimeError("UnknownError: {{function_node __wrapped__IteratorGetNext}} ... DataError: photos/...")

    monkeypatch.setattr(fitting, "fit_phases", fit)
    with pytest.raises(TrainingError) as caught:
        follow(Run(tmp_path / "20261203-000000-x-abcd"), None, data, None, group=_Worker())
    assert str(caught.value) == (
        "worker 1 of run 20261203-000000-x-abcd stopped: "
        "photos/cat/3.png: cannot read as an image (UnidentifiedImageError)"
    )
