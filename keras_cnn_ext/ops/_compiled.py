"""XLA-compiled helper functions that trace once per input signature, without TF's retracing warning."""

from __future__ import annotations

import tensorflow as tf


def compiled(python_function):
    """`tf.function(python_function, jit_compile=True)`, called through its concrete functions.

    The pooling ops compile their gradients (and some forward passes) even inside a plain
    `tf.function`, and some specialise them on static spatial sizes (one function per size,
    from one factory). TF's "N out of the last M calls to <function> triggered tf.function
    retracing" warning counts traces per Python code object, so eager calls on a few input
    shapes logged it although each trace is wanted (XLA compiles per shape anyway). Here
    `reduce_retracing=True` makes the second shape of a signature trace a shape-relaxed
    function that later shapes reuse, and calling the concrete function (the same graph op as
    calling the `tf.function`) keeps the warning's counter out of it.

    `python_function` must not depend on static dimensions of its tensor arguments beyond
    what a relaxed (`None`) shape still gives it.
    """
    function = tf.function(
        python_function, jit_compile=True, autograph=False, reduce_retracing=True
    )

    def call(*args):
        return function.get_concrete_function(*args)(*args)

    call.__name__ = python_function.__name__
    call.__doc__ = python_function.__doc__
    return call
