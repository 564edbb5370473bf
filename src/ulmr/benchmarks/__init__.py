"""Benchmark data loaders (TOFU, RWKU) and benchmark runs."""
