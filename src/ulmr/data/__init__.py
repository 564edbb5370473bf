"""Data: QA records and their readers (``records``), chat formatting and label masking (``chat``), and the
benchmark evaluation sets (``tofu``, ``rwku``)."""
