"""Pure TensorFlow ops: XLA-safe, no Keras state."""
