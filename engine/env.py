"""Reading typed settings from an environment mapping (shared by every settings object)."""
from __future__ import annotations

from typing import Mapping, Optional


def env_raw(environ: Mapping[str, str], name: str) -> Optional[str]:
    """The stripped value, or None when the variable is unset or blank."""
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = env_raw(environ, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as error:
        raise ValueError(f"{name} must be a number, got {raw!r}") from error


def env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = env_raw(environ, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from error
