"""The ULMR generation stage: rewrites and negative responses that make up the restructured forget set."""

from .backends import Backend, BackendError, LocalBackend, OpenAIBackend
from .filters import check_negative, check_rewrite, key_span, leaked_terms
from .restructure import GenerateConfig, RestructureResult, restructure
from .templates import PromptTemplate, builtin_prompts, load_prompt, render

__all__ = [
    "Backend", "BackendError", "LocalBackend", "OpenAIBackend", "GenerateConfig", "RestructureResult", "restructure",
    "PromptTemplate", "builtin_prompts", "load_prompt", "render", "check_negative", "check_rewrite", "key_span", "leaked_terms",
]
