"""Checking a YAML file against what a program expects, reporting every mistake at once.

Each mistake is a ``Problem``: the key's path (``mqtt.port``, ``sensors[3].id``), plain words on
what is wrong and what is allowed, and the line of the file it is on, printed as
``file:line: key: words``. The pieces:

- ``read_yaml``: the file parsed once into data *and* PyYAML's node tree, whose marks give each
  key's line (``YamlFile.line_of``);
- ``model_problems``: a pydantic model's validation errors turned into problems (``loc`` mapped
  to the node, pydantic's error types said in plain words, "did you mean" for misspelt keys and
  choices);
- ``file_problems``: files the config names, checked to exist and be readable (or, for a
  directory the program writes, to be creatable);
- ``duplicate_problems``: an id listed twice in a list of mappings.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from kerbside.core.config import ConfigError

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake (or, with ``warning``, one thing that is probably a mistake) in a file."""

    key: str  # "mqtt.port", "" for the file as a whole
    message: str
    line: int | None = None
    warning: bool = False

    def render(self, file: str | Path) -> str:
        where = f"{file}:{self.line}" if self.line is not None else str(file)
        kind = "warning: " if self.warning else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}: {kind}{key}{self.message}"


class ConfigFileError(ConfigError):
    """A file with mistakes; ``problems`` lists every one (errors first), ``lines`` renders them."""

    def __init__(self, file: str | Path, problems: Sequence[Problem]) -> None:
        self.file = str(file)
        self.problems = sorted(problems, key=lambda p: (p.warning, p.line or 0))
        errors = [p for p in self.problems if not p.warning] or list(self.problems)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{errors[0].render(self.file)}{more}")

    @property
    def lines(self) -> list[str]:
        return [p.render(self.file) for p in self.problems]


def key_path(loc: Loc) -> str:
    """``("sensors", 3, "id")`` -> ``sensors[3].id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class YamlFile:
    """A YAML file's data and node tree (for line numbers)."""

    def __init__(self, path: Path, data: object, root: yaml.Node | None) -> None:
        self.path = path
        self.data = data
        self.root = root

    def line_of(self, loc: Loc) -> int | None:
        """The line of the deepest node on ``loc``: the key's own line when the path ends at a
        key of a mapping, else the item's line; the parent's when the key is missing."""
        node = self.root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                        line = key_node.start_mark.line + 1
                        node = value_node
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    return line
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line


def read_yaml(path: str | Path) -> YamlFile:
    """Parse ``path``; a file that cannot be read or parsed raises ConfigFileError (one line)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigFileError(file, [Problem("", "no such file")]) from exc
    except OSError as exc:
        raise ConfigFileError(file, [Problem("", f"cannot read: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError(file, [Problem("", "not UTF-8 text")]) from exc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = None if root is None else loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        words = exc.problem or exc.context or "syntax error"
        line = None if mark is None else mark.line + 1
        raise ConfigFileError(file, [Problem("", f"not valid YAML: {words}", line)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigFileError(file, [Problem("", f"not valid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    return YamlFile(file, data, root)


# ---- pydantic errors in plain words -----------------------------------------------------------


def _shown(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _limit(value: object) -> str:
    # a float field's bound comes back as a float: "at most 3600", not "at most 3600.0"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` when ``word`` is close to one of ``choices``, else ``""``."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" (did you mean {close[0]}?)" if close else ""


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple, set, frozenset):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (None if not a model)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        found = _models_in(field.annotation)
        current = found[0] if found else None
    return current


def _words(err: Mapping[str, Any], model: type[BaseModel], loc: Loc) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "missing":
        return "required, and missing"
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        allowed = sorted(parent.model_fields) if parent is not None else []
        hint = did_you_mean(loc[-1] if loc else "", allowed)
        listed = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{hint}{listed}"
    bounds = {
        "less_than_equal": f"must be at most {_limit(ctx.get('le'))}",
        "less_than": f"must be less than {_limit(ctx.get('lt'))}",
        "greater_than_equal": f"must be at least {_limit(ctx.get('ge'))}",
        "greater_than": f"must be more than {_limit(ctx.get('gt'))}",
    }
    if kind in bounds:
        return f"{bounds[kind]}, not {_shown(got)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, not {_shown(got)}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, not {_shown(got)}"
    if kind == "finite_number":
        return f"must be a finite number, not {_shown(got)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, not {_shown(got)}"
    if kind in ("string_type", "path_type"):
        return f"must be text, not {_shown(got)}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", "")).strip("^$")
        return f"must match {pattern} (letters, digits, _ and -), not {_shown(got)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of keys, not {_shown(got)}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, not {_shown(got)}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = [c.strip().strip("'\"") for c in expected.replace(" or ", ", ").split(",")]
        return f"must be one of {expected}, not {_shown(got)}{did_you_mean(got, choices)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return str(err["msg"])


def _present(data: object, loc: Loc) -> Loc:
    """``loc`` without pydantic's union tags (parts naming no key of the data)."""
    out: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, Mapping) and isinstance(part, str):
            if part in node or last:
                out.append(part)
                node = node.get(part)
            continue
        if isinstance(node, list) and isinstance(part, int):
            out.append(part)
            node = node[part] if 0 <= part < len(node) else None
            continue
        if not last and not isinstance(part, int):
            continue  # a tag such as "TlsConfig" or "function-after[...]"
        out.append(part)
        node = None
    return tuple(out)


def model_problems(doc: YamlFile, model: type[BaseModel]) -> tuple[Any, list[Problem]]:
    """Validate ``doc.data`` as ``model``: (the model, []) or (None, every problem)."""
    if not isinstance(doc.data, Mapping):
        shown = "nothing" if doc.data is None else _shown(doc.data)
        return None, [Problem("", f"expected a mapping of keys at the top level, got {shown}", 1)]
    try:
        return model.model_validate(doc.data), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _present(doc.data, tuple(err["loc"]))
            problems.append(Problem(key_path(loc), _words(err, model, loc), doc.line_of(loc)))
        return None, problems


# ---- files a config names ---------------------------------------------------------------------

Need = Literal["read", "write-dir"]


def _get(data: object, loc: Loc) -> object:
    for part in loc:
        if isinstance(data, Mapping) and isinstance(part, str):
            data = data.get(part)
        else:
            return None
    return data


def file_problems(
    doc: YamlFile, wanted: Iterable[tuple[Loc, Need]], base: Path | None = None
) -> list[Problem]:
    """For each ``(key, need)`` whose value is a path: ``read`` needs a readable file,
    ``write-dir`` a file whose directory exists and is writable, or can be created."""
    problems = []
    for loc, need in wanted:
        value = _get(doc.data, loc)
        if not isinstance(value, str) or not value:
            continue
        path = Path(value)
        if base is not None and not path.is_absolute():
            path = base / path
        words = _file_words(path, need)
        if words:
            problems.append(Problem(key_path(loc), words, doc.line_of(loc)))
    return problems


def _file_words(path: Path, need: Need) -> str | None:
    if need == "read":
        if not path.exists():
            return f"{path} does not exist"
        if path.is_dir():
            return f"{path} is a directory, not a file"
        if not os.access(path, os.R_OK):
            return f"{path} is not readable by this user"
        return None
    if path.is_dir():
        return f"{path} is a directory; give a file name in it"
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent  # the agent creates missing directories
    if not directory.is_dir():
        return f"cannot create {path}: {directory} is a file, not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"cannot create or write {path}: {directory} is not writable by this user"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable by this user"
    return None


def duplicate_problems(doc: YamlFile, list_key: str, item_key: str) -> list[Problem]:
    """``list_key[i].item_key`` values that repeat an earlier item's."""
    items = _get(doc.data, (list_key,))
    if not isinstance(items, list):
        return []
    first: dict[object, int] = {}
    problems = []
    for index, item in enumerate(items):
        value = item.get(item_key) if isinstance(item, Mapping) else None
        if value is None or isinstance(value, Mapping | list):
            continue
        if value in first:
            loc: Loc = (list_key, index, item_key)
            words = f"{value} is listed twice (first at {list_key}[{first[value]}])"
            problems.append(Problem(key_path(loc), words, doc.line_of(loc)))
        else:
            first[value] = index
    return problems
