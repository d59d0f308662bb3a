"""Transfer learning as keras-io's "Transfer learning & fine-tuning" guide writes it, on MNIST-made .npz files.

    python benchmarks/plain_keras_transfer.py pretrain PRETRAIN.npz --save PRE.keras [--epochs 2] [--seed 42]
    python benchmarks/plain_keras_transfer.py task TASK.npz --way frozen --pretrained PRE.keras [--seed 0]

pretrain: the small CNN (Conv2D(16) -> MaxPool -> Conv2D(32) -> MaxPool -> Flatten -> Dense(64) -> Dense(classes))
trained on the file's x_train/y_train and saved. task --way:
- scratch: the same architecture, fresh weights;
- frozen: the pretrained layers up to `flatten` (inclusive) as a frozen base under a new Dense(64) -> Dense(classes);
- fine_tuned: frozen, then the base unfrozen, recompiled at learning_rate / 10, trained --fine-tune-epochs more;
- wrong_cut: the whole pretrained model minus its last layer as the frozen base, under the same new head.

The guide's steps: `base = keras.Model(pre.inputs, pre.get_layer("flatten").output)`, `base.trainable = False`,
`x = base(inputs, training=False)`, a new head, compile, fit; then `base.trainable = True`, compile again with
the lower rate, fit. Inputs are scaled by 1/255 as float32 before training (dltool's data.scale does the same).

Prints one JSON line: test_accuracy (after the last phase), phase_accuracy (test accuracy after each phase),
epoch_seconds (one list per phase: on_epoch_begin to on_epoch_end, as dltool's history.csv measures them),
fit_seconds, trainable_params (per phase), train_images, test_images.
"""

import argparse
import json
import time

import numpy as np

FINE_TUNE_DIVISOR = 10  # keras-io: fine-tune at a learning rate about 10x lower than the head's


def load_split(path: str):
    """x_train, y_train, x_test, y_test of an .npz, inputs as float32 in [0, 1] with a channel axis."""
    with np.load(path) as data:
        arrays = [data[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    x_train, y_train, x_test, y_test = arrays
    return (
        (x_train[..., None] / np.float32(255)).astype(np.float32),
        y_train,
        (x_test[..., None] / np.float32(255)).astype(np.float32),
        y_test,
    )


def small_cnn(keras, input_shape: tuple, classes: int):
    """The benchmark's CNN, in the order dltool's Sequential builds it (so layer names match: flatten, dense...)."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(classes, activation="softmax"),
        ]
    )


def on_pretrained_base(keras, pretrained: str, cut: str, input_shape: tuple, classes: int):
    """(model, base): the pretrained layers up to ``cut`` ('flatten', or 'minus_last') frozen, under a new head."""
    pre = keras.saving.load_model(pretrained)
    end = pre.get_layer("flatten") if cut == "flatten" else pre.layers[-2]
    base = keras.Model(pre.inputs, end.output, name="base")
    base.trainable = False
    inputs = keras.Input(input_shape)
    x = base(inputs, training=False)  # the guide's rule: the base runs in inference mode, even once unfrozen
    x = keras.layers.Dense(64, activation="relu", name="head_dense")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head_output")(x)
    return keras.Model(inputs, outputs), base


def epoch_timer(keras):
    """A callback that times each epoch from on_epoch_begin to on_epoch_end."""

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(round(time.perf_counter() - self._start, 4))

    return EpochTimer()


def trainable_count(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["pretrain", "task"])
    parser.add_argument("data", help="an .npz with x_train, y_train, x_test, y_test (28x28 uint8 images)")
    parser.add_argument("--save", help="pretrain: where to save the trained model (.keras)")
    parser.add_argument("--pretrained", help="task: the pretrained model (.keras) for frozen, fine_tuned, wrong_cut")
    parser.add_argument("--way", choices=["scratch", "frozen", "fine_tuned", "wrong_cut"], default="scratch")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="adam's rate (Keras's default)")
    parser.add_argument("--steps-per-execution", type=int, default=1, help="Keras's default 1; dltool's is 32")
    parser.add_argument("--seed", type=int, default=42, help="keras.utils.set_random_seed: weights and shuffles")
    args = parser.parse_args()
    if args.step == "pretrain" and not args.save:
        parser.error("pretrain needs --save PATH.keras")
    if args.step == "task" and args.way != "scratch" and not args.pretrained:
        parser.error(f"--way {args.way} needs --pretrained PATH.keras")

    import keras

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_test, y_test = load_split(args.data)
    classes = int(max(y_train.max(), y_test.max())) + 1
    input_shape = x_train.shape[1:]
    if args.step == "pretrain" or args.way == "scratch":
        model, base = small_cnn(keras, input_shape, classes), None
    else:
        cut = "minus_last" if args.way == "wrong_cut" else "flatten"
        model, base = on_pretrained_base(keras, args.pretrained, cut, input_shape, classes)

    def compile_at(rate: float) -> None:
        model.compile(
            optimizer=keras.optimizers.Adam(rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=args.steps_per_execution,
        )

    phases = [(args.learning_rate, args.epochs)]
    if args.step == "task" and args.way == "fine_tuned":
        phases.append((args.learning_rate / FINE_TUNE_DIVISOR, args.fine_tune_epochs))
    epoch_seconds, phase_accuracy, trainable = [], [], []
    fit_seconds = 0.0
    for index, (rate, epochs) in enumerate(phases):
        if index == 1:
            base.trainable = True  # recompiled below: trainable changes take effect at compile
        compile_at(rate)
        trainable.append(trainable_count(model))
        timer = epoch_timer(keras)
        start = time.perf_counter()
        model.fit(x_train, y_train, epochs=epochs, batch_size=args.batch_size, callbacks=[timer], verbose=0)
        fit_seconds += time.perf_counter() - start
        epoch_seconds.append(timer.seconds)
        _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
        phase_accuracy.append(float(accuracy))
    if args.step == "pretrain":
        model.save(args.save)
    print(
        json.dumps(
            {
                "test_accuracy": phase_accuracy[-1],
                "phase_accuracy": phase_accuracy,
                "epoch_seconds": epoch_seconds,
                "fit_seconds": round(fit_seconds, 3),
                "trainable_params": trainable,
                "train_images": len(x_train),
                "test_images": len(x_test),
            }
        )
    )


if __name__ == "__main__":
    main()
