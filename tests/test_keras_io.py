"""dltool.keras_io: Keras-side helpers shared by training, evaluation and prediction."""

import pytest

from dltool.keras_io import INFERENCE_BATCH_MIN, inference_batch_size


@pytest.mark.parametrize(
    ("train_batch", "expected"), [(1, 256), (16, 256), (32, 256), (48, 288), (100, 300), (256, 256), (1000, 1000)]
)
def test_the_inference_batch_is_the_first_multiple_of_the_training_batch_from_the_minimum(train_batch, expected):
    """A multiple of the training batch splits over the devices as it does; at least INFERENCE_BATCH_MIN."""
    assert inference_batch_size(train_batch) == expected
    assert expected % train_batch == 0 and expected >= INFERENCE_BATCH_MIN
