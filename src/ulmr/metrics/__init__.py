"""Metric functions, one small module per family; look them up by name in :mod:`ulmr.metrics.registry`."""
