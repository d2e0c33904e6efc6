"""A YAML config file plus ``key=value`` overrides, read into one mapping; unknown keys named with the
closest known ones. The training config and the label config both read their files this way."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import yaml


def read_config_mapping(path: str | Path | None, overrides: Sequence[str] = (), *, what: str = "a config",
                        example: str = "key=value") -> dict[str, Any]:
    """The file's mapping (``yaml.safe_load``: a config can never construct Python objects), then each
    override ``key=value`` with its value parsed as YAML, later ones winning.

    `what` names the config in errors ("a label config"); `example` is an override shown in the error
    for one without ``=``.
    """
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: {what} must be a mapping of key: value, got {type(loaded).__name__}")
        data.update(loaded or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value (example: {example})")
        data[key.strip()] = yaml.safe_load(value)
    return data


def check_known_keys(data: Mapping, known: Collection[str], where: str, *, list_known: bool = False) -> None:
    """Raise ValueError for the first key of `data` not in `known`, naming up to three close matches
    (or, with `list_known` and none close, every known key)."""
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=3)
            hint = (f" Did you mean {', '.join(close)}?" if close
                    else f" Known: {', '.join(sorted(known))}." if list_known else "")
            raise ValueError(f"{where}: unknown key {key!r}.{hint}")
