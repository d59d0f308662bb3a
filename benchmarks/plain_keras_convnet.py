"""keras-io's "Simple MNIST convnet" (keras.io/examples/vision/mnist_convnet), as published, in float32.

    KERAS_BACKEND=tensorflow python benchmarks/plain_keras_convnet.py PATH/TO/mnist.npz [--epochs 15] [--seed S]

The example's code with three changes a benchmark needs: MNIST comes from a local ``.npz`` (x_train,
y_train, x_test, y_test, as ``keras.datasets.mnist.load_data`` reads it) instead of the download, fit and
evaluate are quiet (verbose=0: the captured progress bar is noise, not work), and a timer goes around
``model.fit``. ``--seed S`` calls ``keras.utils.set_random_seed(S)`` first (default: unseeded, as published).
The backend is KERAS_BACKEND's. Prints one JSON line: {"fit_seconds", "test_accuracy"}.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def convnet(keras, input_shape=(28, 28, 1), num_classes=10):
    """The example's model, uncompiled (34,826 parameters for MNIST)."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    """Train and evaluate the convnet; print fit seconds and test accuracy as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mnist", help="an mnist.npz with x_train, y_train, x_test, y_test")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of training (default 15, as published)")
    parser.add_argument("--seed", type=int, default=None, help="keras.utils.set_random_seed (default: unseeded)")
    args = parser.parse_args(argv)

    import keras

    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)

    # Model / data parameters
    num_classes = 10
    input_shape = (28, 28, 1)

    with np.load(args.mnist) as data:
        (x_train, y_train), (x_test, y_test) = (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])

    # Scale images to the [0, 1] range
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255
    # Make sure images have shape (28, 28, 1)
    x_train = np.expand_dims(x_train, -1)
    x_test = np.expand_dims(x_test, -1)

    # convert class vectors to binary class matrices
    y_train = keras.utils.to_categorical(y_train, num_classes)
    y_test = keras.utils.to_categorical(y_test, num_classes)

    model = convnet(keras, input_shape, num_classes)

    batch_size = 128
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=args.epochs, validation_split=0.1, verbose=0)
    fit_seconds = time.perf_counter() - start

    score = model.evaluate(x_test, y_test, verbose=0)
    print(json.dumps({"fit_seconds": round(fit_seconds, 3), "test_accuracy": round(float(score[1]), 4)}))


if __name__ == "__main__":
    main()
