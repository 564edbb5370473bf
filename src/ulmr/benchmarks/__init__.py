"""Benchmark runs (TOFU, RWKU); their data loaders live in ``ulmr.data.tofu`` / ``ulmr.data.rwku``."""
