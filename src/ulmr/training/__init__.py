"""Internals of the unlearning trainer; the public entry point is :mod:`ulmr.train`."""
