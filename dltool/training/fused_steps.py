"""Keras's JAX train and test functions with their ``steps_per_execution`` batches fused into one XLA call.

Keras 3 on JAX runs ``steps_per_execution`` as a Python loop that calls the jitted step once per batch, so a
small model pays a dispatch per batch. Here the batches of one execution run in a ``jax.lax.scan`` inside one
jitted call, through Keras's own ``train_step`` and ``test_step`` (loss, metrics, sample and class weights,
dropout seeds: all unchanged). What Keras's fit loop sees is unchanged too: the function takes the state and the
execution's batch iterator and returns the last step's logs and the new state.

The execution's batches, as Keras's data adapter cut them, are stacked on the host while the previous call
computes. (Keeping the inputs on the device and gathering each batch there instead was measured: no faster on
configs/mnist_mlp.yaml, whose fit is the step's own computation once fused, and a second copy of the data.)

Fused only where it pays and is safe: the JAX backend, jit on, no ``keras.distribution`` (whose data layouts
Keras applies per batch), more than one step per execution, and a group of batches small enough to stack
(:data:`MAX_STACKED_BYTES`; image batches of a large model gain nothing from it). Anything else runs as Keras
runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

# A group of batches bigger than this runs step by step: stacking copies it, and a step that moves this much
# data is long enough that a dispatch per step costs nothing.
MAX_STACKED_BYTES = 32 * 1024 * 1024


def fuse_steps(model) -> bool:
    """Replace a compiled JAX model's train and test functions by fused ones; whether it did (see the module)."""
    import keras

    if keras.backend.backend() != "jax" or model.steps_per_execution <= 1:
        return False
    if model.run_eagerly or not model.jit_compile or keras.distribution.distribution() is not None:
        return False
    model.train_function = _fused_function(model.train_step, model.steps_per_execution)
    model.test_function = _fused_function(model.test_step, model.steps_per_execution)
    return True


def _fused_function(step: Callable, steps_per_execution: int) -> Callable:
    """``(state, iterator) -> (logs, state)`` over up to ``steps_per_execution`` batches of ``iterator``."""
    import jax

    def scanned(state, stacked):
        def body(carry, batch):
            logs, carry = step(carry, batch)
            return carry, logs

        state, logs = jax.lax.scan(body, state, stacked)
        return jax.tree.map(lambda values: values[-1], logs), state

    one_step = jax.jit(step, donate_argnums=0)
    all_steps = jax.jit(scanned, donate_argnums=0)
    running = []  # the logs of the call still computing, if any

    def iterator_step(state, iterator: Iterator):
        batches = [next(iterator)]  # StopIteration here ends the epoch, as in Keras's own function
        for _ in range(steps_per_execution - 1):
            try:
                batches.append(next(iterator))
            except StopIteration:
                break
        stacked = _stacked(batches) if len(batches) == steps_per_execution else None
        # The batches were gathered while the previous call computed; wait for it before queueing this one, or
        # the loop runs a whole epoch ahead of the computation, holding every queued group in memory.
        if running:
            jax.block_until_ready(running.pop())
        if stacked is not None:
            logs, state = all_steps(state, stacked)
        else:
            # The epoch's last, shorter group (a scan of another length would compile anew), or a group that
            # cannot be stacked: step by step, as Keras does.
            for batch in batches:
                logs, state = one_step(state, batch)
        running.append(logs)
        return logs, state

    return iterator_step


def _stacked(batches: list):
    """The batches stacked along a new first axis (NumPy on the host, jnp where they are on a device), or None
    where they differ in structure, shape or dtype, or together exceed :data:`MAX_STACKED_BYTES`."""
    import jax

    flat = [jax.tree.flatten(batch) for batch in batches]
    first, first_tree = flat[0]
    if not all(hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in first):
        return None
    signature = [(leaf.shape, leaf.dtype) for leaf in first]
    if any(tree != first_tree or [(leaf.shape, leaf.dtype) for leaf in leaves] != signature for leaves, tree in flat):
        return None
    if sum(leaf.nbytes for leaf in first) * len(batches) > MAX_STACKED_BYTES:
        return None
    columns = zip(*(leaves for leaves, _ in flat))
    return jax.tree.unflatten(first_tree, [_stack_leaves(column) for column in columns])


def _stack_leaves(leaves):
    import jax

    if any(isinstance(leaf, jax.Array) for leaf in leaves):
        return jax.numpy.stack(leaves)
    return np.stack(leaves)
