"""The seed program dltool replaces: the classic Keras MNIST MLP, as users write it.

    python benchmarks/plain_keras_mnist.py PATH/TO/mnist.npz [--tuned]

--tuned applies the two changes that matter on CPU: float32 inputs prepared
once and steps_per_execution=32. Prints one JSON line: fit seconds, test accuracy, and the seconds of each
phase as dltool's run.json names them (start_up: from the process's start to Keras imported; data; model: built and compiled; fit; test).
"""

import json
import os
import sys
import time


def process_age() -> float:
    """Seconds since this process started (Linux /proc), as dltool measures its start_up phase."""
    with open("/proc/self/stat", encoding="ascii") as stat:
        started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime", encoding="ascii") as uptime:
        return float(uptime.read().split()[0]) - started


import keras  # noqa: E402  (after process_age: the import is the start-up being measured)
import numpy as np  # noqa: E402

phases = {"start_up": round(process_age(), 3)}
started = time.perf_counter()

path = sys.argv[1]
tuned = "--tuned" in sys.argv
epochs = int(next((a.split("=")[1] for a in sys.argv if a.startswith("--epochs=")), 10))
with np.load(path) as data:
    x_train, y_train, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
if tuned:
    x_train, x_test = (x_train / np.float32(255)).astype(np.float32), (x_test / np.float32(255)).astype(np.float32)
else:
    x_train, x_test = x_train / 255.0, x_test / 255.0
phases["data"] = round(time.perf_counter() - started, 3)
started = time.perf_counter()

model = keras.Sequential(
    [
        keras.Input((28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(
    optimizer="adam",
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
    **({"steps_per_execution": 32} if tuned else {}),
)
phases["model"] = round(time.perf_counter() - started, 3)
start = time.perf_counter()
model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_data=(x_test, y_test), verbose=0)
fit_seconds = time.perf_counter() - start
phases["fit"] = round(fit_seconds, 3)
start = time.perf_counter()
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
phases["test"] = round(time.perf_counter() - start, 3)
print(
    json.dumps(
        {"fit_seconds": round(fit_seconds, 3), "test_accuracy": round(float(accuracy), 4), "phase_seconds": phases}
    )
)
