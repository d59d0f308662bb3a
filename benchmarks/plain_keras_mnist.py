"""The seed program dltool replaces: the classic Keras MNIST MLP, as users write it.

    python benchmarks/plain_keras_mnist.py PATH/TO/mnist.npz [--tuned]

--tuned applies the two changes that matter on CPU: float32 inputs prepared
once and steps_per_execution=32. Prints one JSON line: fit seconds, test accuracy.
"""

import json
import sys
import time

import keras
import numpy as np

path = sys.argv[1]
tuned = "--tuned" in sys.argv
epochs = int(next((a.split("=")[1] for a in sys.argv if a.startswith("--epochs=")), 10))
with np.load(path) as data:
    x_train, y_train, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
if tuned:
    x_train, x_test = (x_train / np.float32(255)).astype(np.float32), (x_test / np.float32(255)).astype(np.float32)
else:
    x_train, x_test = x_train / 255.0, x_test / 255.0

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
start = time.perf_counter()
model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_data=(x_test, y_test), verbose=0)
fit_seconds = time.perf_counter() - start
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(json.dumps({"fit_seconds": round(fit_seconds, 3), "test_accuracy": round(float(accuracy), 4)}))
