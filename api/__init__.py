"""tffexec: run serialized TensorFlow Federated computations in-process."""
__version__ = "0.1.0"
