"""Evaluation: batched engines (``engines``) and the TOFU / RWKU / QA evaluators built on the metrics."""
