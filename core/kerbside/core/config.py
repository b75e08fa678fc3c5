"""Loading YAML config files into pydantic models with one-line errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(Exception):
    """A config file that cannot be used; the message is one line and names the key."""


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def describe_validation_error(exc: ValidationError) -> list[str]:
    """``key.path: message`` for every error pydantic found."""
    return [f"{_path(tuple(err['loc']))}: {err['msg']}" for err in exc.errors()]


def load_yaml_model(path: str | Path, model: type[ModelT]) -> ModelT:
    """Read ``path`` as YAML and validate it as ``model``; raise ConfigError on any problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of keys at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"{file}: {problems[0]}{more}") from exc
