"""Prompt templates for the generation stage: YAML files with few-shot examples as earlier chat turns.

A template file holds::

    name: rewrite                  # optional, defaults to the file stem
    system: "..."                  # optional system text
    shots:                         # optional few-shot examples, sent as earlier chat turns
      - user: "..."
        assistant: "..."
    user: "... {question} ... {answer} ..."   # the final user turn
    entities: ["...", ...]         # optional: extra entities of the examples (leak detection)

Only ``{question}`` and ``{answer}`` in ``user`` are placeholders. They are substituted in one regex
pass, so user data is inserted verbatim: braces, Jinja syntax or a literal "{answer}" inside a
question are never interpreted or substituted again. Shots and system text are used as written.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError, DataError
from .filters import entities as find_entities

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
PLACEHOLDER = re.compile(r"\{(question|answer)\}")

Turn = dict[str, str]


def render(template: str, question: str, answer: str = "") -> str:
    """Substitute ``{question}``/``{answer}`` in a single pass; everything else stays literal."""
    values = {"question": question, "answer": answer}
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded prompt: ``conversation()`` builds the chat turns for one item."""

    name: str
    user: str
    shots: tuple[tuple[str, str], ...] = ()
    system: str | None = None
    extra_entities: tuple[str, ...] = ()
    source: str = ""
    example_entities: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        found: list[str] = list(self.extra_entities)
        for u, a in self.shots:
            for ent in find_entities(u) + find_entities(a):
                if ent not in found:
                    found.append(ent)
        object.__setattr__(self, "example_entities", tuple(found))

    def conversation(self, question: str, answer: str = "", rotate: int = 0) -> list[Turn]:
        """System (if any), the shots as user/assistant turns (rotated by ``rotate`` to vary the
        context between slots), then the rendered final user turn."""
        turns: list[Turn] = [{"role": "system", "content": self.system}] if self.system else []
        shots = list(self.shots)
        if shots and rotate:
            r = rotate % len(shots)
            shots = shots[r:] + shots[:r]
        for u, a in shots:
            turns += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        turns.append({"role": "user", "content": render(self.user, question, answer)})
        return turns

    def fingerprint(self) -> str:
        """A short hash of everything that changes what the prompt produces."""
        blob = json.dumps([self.user, self.shots, self.system, self.extra_entities], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def builtin_prompts() -> list[str]:
    """Names of the prompt files shipped with the package."""
    return sorted(p.stem for p in PROMPT_DIR.glob("*.yaml"))


def _text(value: object, where: str, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field '{field_name}' must be non-empty text")
    return value


def load_prompt(spec: str | Path, require: tuple[str, ...] = ("question",)) -> PromptTemplate:
    """Load a built-in prompt by name (``rewrite``, ``negative_refusal``...) or a YAML file by path.

    ``require`` lists the placeholders the final user template must contain."""
    spec_s = str(spec)
    path = Path(spec_s).expanduser()
    if not (path.suffix in (".yaml", ".yml") or path.exists() or "/" in spec_s):
        path = PROMPT_DIR / f"{spec_s}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown prompt '{spec_s}' (built-in: {', '.join(builtin_prompts())}; or give a .yaml path)")
    if not path.is_file():
        raise ConfigError(f"prompt file {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with a 'user' template")
    unknown = set(data) - {"name", "system", "shots", "user", "entities", "description"}
    if unknown:
        raise DataError(f"{path}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    user = _text(data.get("user"), str(path), "user")
    for ph in require:
        if "{" + ph + "}" not in user:
            raise DataError(f"{path}: field 'user' must contain the placeholder {{{ph}}}")
    system = data.get("system")
    if system is not None:
        system = _text(system, str(path), "system")
    shots_raw = data.get("shots") or []
    if not isinstance(shots_raw, list):
        raise DataError(f"{path}: field 'shots' must be a list of {{user, assistant}} pairs")
    shots = []
    for i, s in enumerate(shots_raw):
        if not isinstance(s, dict) or set(s) != {"user", "assistant"}:
            raise DataError(f"{path}: shots[{i}] must have exactly the fields 'user' and 'assistant'")
        shots.append((_text(s["user"], str(path), f"shots[{i}].user"), _text(s["assistant"], str(path), f"shots[{i}].assistant")))
    ents = data.get("entities") or []
    if not isinstance(ents, list) or not all(isinstance(e, str) for e in ents):
        raise DataError(f"{path}: field 'entities' must be a list of strings")
    name = data.get("name") or path.stem
    return PromptTemplate(str(name), user, tuple(shots), system, tuple(ents), str(path))
