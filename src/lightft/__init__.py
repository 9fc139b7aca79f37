"""lightft: lightweight fine-tuning of Transformer encoders for text classification."""

__version__ = "0.1.0"
