"""Sizes and ages as the config writes them ("100MB", "30d"), in bytes and seconds."""
from __future__ import annotations

import re

_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str | int) -> int:
    """Bytes from 1048576, "512K", "100MB", "1GiB" (K, M, G are powers of 1024, as in logrotate)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(I?B)?\s*", text.upper())
    if not match:
        raise ValueError(f"size: {text!r} is not a size such as \"100MB\"")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_age(text: str | int) -> float:
    """Seconds from 3600, "90s", "30m", "12h", "30d", "4w"."""
    if isinstance(text, int):
        return float(text)
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text.lower())
    if not match:
        raise ValueError(f"max_age: {text!r} is not an age such as \"30d\"")
    return float(int(match.group(1)) * _AGES[match.group(2)])
