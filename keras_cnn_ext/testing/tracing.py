"""Counting how many times Keras traces a model's train step."""

from __future__ import annotations


def count_train_traces(model):
    """Wraps `model.train_step`; returns a list that grows by one item per trace of it.

    `fit` and `train_on_batch` call `train_step` only while tracing their `tf.function`, so the
    list's length after a call is the number of traces that call made.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> model.compile("sgd", "mse")
    >>> traces = count_train_traces(model)
    >>> _ = model.fit(np.zeros((8, 4)), np.zeros((8, 2)), epochs=2, verbose=0)
    >>> len(traces)
    1
    """
    traces = []
    step = model.train_step

    def counted(data):
        traces.append(1)
        return step(data)

    model.train_step = counted
    return traces
