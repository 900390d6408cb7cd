"""The `keras-cnn-ext` subcommands, one module each: `add_arguments(parser)` and `run(args)`.

Each module imports only the standard library at import time (so `keras-cnn-ext --help` never
imports TensorFlow); `run` imports what it needs. `keras_cnn_ext.cli` holds the parser, the
dispatch and the helpers they share (`load_target`, `CLIError`, ...).
"""
