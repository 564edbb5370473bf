"""Metric functions, one small module per family; the evaluators in ``ulmr.eval`` call them directly."""
