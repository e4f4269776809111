"""Stage configs: dataclasses filled from a YAML file and ``key=value`` overrides.

Every ``safework-train`` stage reads its settings the same way::

    safework-train sft --config sft.yaml lr=1e-4 lora.r=16 output=runs/sft

- A config is a dataclass. Each field has a default and ``metadata={"help": ...}``; nested
  dataclasses group related fields (``lora.r``). ``--help`` lists every key with its type,
  default and help, so the flags never drift from the code.
- The YAML file gives a mapping of those keys (nested mappings for nested configs, or dotted
  keys); the overrides after it win. Values are parsed as YAML scalars (``1e-4``, ``true``,
  ``null``, ``[1, 2]``) and converted to the field's type; a wrong type or an unknown key is a
  ``ConfigError`` that names the key and lists the valid ones.
- After loading, ``check()`` (when the dataclass defines it) validates values together and
  raises ``ConfigError`` saying which key to change.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from safework.errors import ConfigError

__all__ = [
    "add_config_arguments",
    "config_from_args",
    "config_help",
    "config_to_dict",
    "help_text",
    "load_config",
    "parse_overrides",
]

T = TypeVar("T")


def help_text(text: str) -> dict[str, str]:
    """A field's ``metadata``, its line in ``--help``:
    ``lr: float = field(default=1e-4, metadata=help_text("learning rate"))``."""
    return {"help": text}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` (parsed YAML) as type ``tp``, or a ``ConfigError`` naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arm in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arm, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: cannot read {value!r}")
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: {value!r} is not one of {choices}")
        return value
    if origin in (list, tuple, Sequence):
        items = value if isinstance(value, list | tuple) else [value]
        inner = args[0] if args else Any
        return type(items)(_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(items))
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, str | Path):
            return Path(value).expanduser()
        raise ConfigError(f"{key}: expected a path, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


_FAMILIAR = {
    "learning_rate": "lr",
    "output_dir": "output",
    "model_name_or_path": "model",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "max_seq_length": "max_length",
    "lr_scheduler_type": "scheduler",
    "num_generations": "group_size",
}
"""HF Trainer / TRL names and ours, so a familiar name gets a pointer to the right key."""


def _unknown(key: str, cls: type) -> ConfigError:
    valid = [f.name for f in dataclasses.fields(cls)]
    leaf = key.rpartition(".")[2]
    close = [_FAMILIAR[leaf]] if _FAMILIAR.get(leaf) in valid else []
    close = close or difflib.get_close_matches(leaf, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys: {', '.join(valid)}")


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys (``lora.r``) as nested mappings, merged with nested ones. Keys inside a
    mapping value are kept as written (a dict field's keys may contain dots)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if not isinstance(key, str):
            raise ConfigError(f"config keys must be strings, got {key!r}")
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"config key {part!r} is both a value and a section")
            node = child
        leaf = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = _merge(node[leaf], value)
        elif isinstance(value, dict):
            node[leaf] = dict(value)
        else:
            node[leaf] = value
    return out


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _build(cls: type[T], values: Mapping[str, Any], prefix: str = "") -> T:
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise _unknown(dotted, cls)
        tp = hints[key]
        if _is_config(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{dotted}: is a section; set its keys ({dotted}.KEY=VALUE)")
            kwargs[key] = _build(tp, value, f"{dotted}.")
        else:
            kwargs[key] = _convert(value, tp, dotted)
    return cls(**kwargs)


def _check(config: Any, prefix: str = "") -> None:
    """Sections first, then ``config.check()``. A section whose check speaks ``ValueError`` (the
    CPGD loss's settings, which the loss checks too) is reported as ``ConfigError("key: ...")``."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            try:
                _check(value, f"{prefix}{f.name}.")
            except ValueError as exc:
                raise ConfigError(f"{prefix}{f.name}: {exc}") from None
    check = getattr(config, "check", None)
    if callable(check):
        check()


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["lr=1e-4", "lora.r=8"]`` as ``{"lr": 1e-4, "lora.r": 8}`` (YAML scalars)."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not KEY=VALUE (for example lr=1e-4)")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def load_config(
    cls: type[T],
    path: Path | str | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    section: str | None = None,
) -> T:
    """Build and check a ``cls`` config from a YAML file and overrides.

    ``section``: read that top-level key of the file (a pipeline recipe holds one per stage)
    when present; otherwise the whole file is the config.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        if section is not None and isinstance(data.get(section), dict):
            data = data[section]
        values = _nest(data)
    extra = parse_overrides(overrides) if not isinstance(overrides, Mapping) else overrides
    values = _merge(values, _nest(extra))
    config = _build(cls, values)
    _check(config)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as plain YAML/JSON-ready data (paths as strings)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(str(f.default) if isinstance(f.default, Path) else f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return repr(f.default_factory())  # type: ignore[misc]
    return "required"


def config_help(cls: type, prefix: str = "") -> str:
    """One line per key: ``name (type, default): help``; sections indented under their key."""
    hints = _hints(cls)
    lines: list[str] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        text = f.metadata.get("help", "")
        if _is_config(tp):
            lines.append(f"  {prefix}{f.name}.*  {text}")
            lines.append(config_help(tp, f"{prefix}{f.name}."))
            continue
        lines.append(f"  {prefix}{f.name} ({_type_name(tp)}, default {_default_text(f)})")
        if text:
            lines.append(f"      {text}")
    return "\n".join(lines)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """``--config FILE`` and ``KEY=VALUE ...`` overrides; the keys go in ``--help``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--config", type=Path, default=None, help="YAML file of KEY: VALUE")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="settings that win over the file"
    )
    keys = config_help(cls)
    parser.epilog = f"config keys (in the YAML file or as KEY=VALUE):\n{keys}"
    parser.set_defaults(config_class=cls)


def config_from_args(cls: type[T], args: argparse.Namespace, section: str | None = None) -> T:
    """The config named by ``--config`` and the overrides of a parsed command line."""
    return load_config(cls, args.config, args.overrides, section=section)
