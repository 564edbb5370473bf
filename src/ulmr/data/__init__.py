"""Data: QA records and their readers (``records``), chat formatting and label masking (``chat``)."""
