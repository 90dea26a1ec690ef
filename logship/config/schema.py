"""Turning TOML tables into frozen dataclasses, with errors that name the key path."""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from ..errors import ConfigError

#: field metadata marking a path that is resolved relative to the config file
PATH = {"path": True}


def build(cls: type, table: Any, key: str, file: str, base: Path) -> Any:
    """Build dataclass `cls` from `table`; unknown keys and wrong types raise ConfigError."""
    if not isinstance(table, dict):
        raise ConfigError(file, key, f"expected a table, got {_kind(table)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, field in fields.items():  # defaults get the same treatment as given values
        if name in table:
            continue
        if field.metadata.get("path") and isinstance(field.default, str):
            values[name] = str((base / field.default).resolve())
        elif dataclasses.is_dataclass(hints[name]):
            values[name] = build(hints[name], {}, f"{key}.{name}" if key else name, file, base)
    for name, value in table.items():
        path = f"{key}.{name}" if key else name
        field = fields.get(name)
        if field is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(file, path, f"unknown key (known keys: {known})")
        value = convert(hints[field.name], value, path, file, base)
        if field.metadata.get("path") and isinstance(value, str):
            value = str((base / value).resolve()) if "{" not in value else str(base / value)
        values[field.name] = value
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(file, f"{key}.{missing[0]}" if key else missing[0], "required key is missing")
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        raise key_error(file, key, error, values) from None


def key_error(file: str, key: str, error: Exception, keys: Any) -> ConfigError:
    """A check's ValueError("key: problem") or ValueError("problem") as the ConfigError naming its key path."""
    sub, _, problem = str(error).partition(": ")
    if problem and re.split(r"[.\[]", sub, maxsplit=1)[0] in keys:  # "providers.acme[1]" names that key too
        return ConfigError(file, f"{key}.{sub}" if key else sub, problem)
    return ConfigError(file, key, str(error))


def convert(hint: Any, value: Any, key: str, file: str, base: Path) -> Any:
    """Check `value` against the type `hint`, converting tables and arrays."""
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        table_types = [o for o in get_args(hint) if dataclasses.is_dataclass(o)]
        if isinstance(value, dict) and len(table_types) == 1:  # keep the inner key path in errors
            return convert(table_types[0], value, key, file, base)
        errors = []
        for option in get_args(hint):
            try:
                return convert(option, value, key, file, base)
            except ConfigError as error:
                errors.append(error.problem)
        raise ConfigError(file, key, " or ".join(dict.fromkeys(errors)))
    if origin is Literal:
        if value in get_args(hint):
            return value
        choices = ", ".join(repr(c) for c in get_args(hint))
        raise ConfigError(file, key, f"must be one of {choices}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(file, key, f"expected an array, got {_kind(value)}")
        item = get_args(hint)[0]
        return tuple(convert(item, v, f"{key}[{i}]", file, base) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"expected a table, got {_kind(value)}")
        item = get_args(hint)[1]
        return {k: convert(item, v, f"{key}.{k}", file, base) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(_variant(hint, value, key, file), value, key, file, base)
    if hint is type(None):
        raise ConfigError(file, key, "no value")
    if hint is Any:
        return value
    return _scalar(hint, value, key, file)


def _variant(cls: type, table: Any, key: str, file: str) -> type:
    """The subclass that a table's `type` key selects, for classes with `variants`."""
    variants = getattr(cls, "variants", None)
    if not variants or not isinstance(table, dict):
        return cls
    kind = table.get("type")
    if kind not in variants:
        choices = ", ".join(repr(v) for v in variants)
        got = "missing" if kind is None else repr(kind)
        raise ConfigError(file, f"{key}.type", f"must be one of {choices}, got {got}")
    return variants[kind]


def _scalar(hint: type, value: Any, key: str, file: str) -> Any:
    """Check a scalar; an int is accepted where a float is wanted, a bool never as a number."""
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(file, key, f"expected {_NAMES.get(hint, hint.__name__)}, got {_kind(value)}")


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _kind(value: Any) -> str:
    """A TOML-ish name for the type of `value`, for error messages."""
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{_NAMES.get(type(value), type(value).__name__)} ({value!r})"
