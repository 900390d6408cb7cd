"""Device set-up for tests that need several replicas on one CPU."""

import tensorflow as tf


def configure_logical_cpus(count=2):
    """Splits the first physical CPU into `count` logical devices, before TensorFlow initialises.

    `tf.distribute.MirroredStrategy` then runs `count` real replicas on one machine. Returns the
    number of logical CPUs available; once TensorFlow has initialised its devices the split can no
    longer change, and the current count is returned unchanged.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:
        pass  # devices already initialised: keep whatever split exists
    return len(tf.config.list_logical_devices("CPU"))
