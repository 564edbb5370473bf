"""Unlearning losses, one per file, chosen by name from :mod:`.registry`."""

from .base import Method
from .registry import METHODS, get_method, method_class

__all__ = ["METHODS", "Method", "get_method", "method_class"]
