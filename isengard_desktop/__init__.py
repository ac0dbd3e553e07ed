"""Isengard Desktop: train an identity LoRA from photos of a person, then generate images of them."""

__version__ = "0.1.0"
APP_NAME = "Isengard Desktop"
