"""Evaluation: the TOFU / RWKU / QA evaluators built on the metrics and the shared inference (``ulmr.inference``)."""
