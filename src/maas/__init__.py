"""maas: a model-as-a-service gateway for PyTorch models."""

__version__ = "0.1.0"
