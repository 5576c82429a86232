"""Numbers from the environment: one parser, one wording of its errors, for every setting that is a
count, a size or a duration (`VIDSEARCH_MAX_DECODE_PIXELS`, `VIDSEARCH_CROP_CACHE_MB`, ...).

The caller names the error it raises, because what a bad value means depends on where it is read: a
permanent failure of an ingest task, bad input to the search service, a misconfigured API server.
"""

from __future__ import annotations

import math
import os
from typing import TypeVar

N = TypeVar("N", int, float)


def number_from_env(
    name: str,
    default: N,
    kind: type[N],
    *,
    lo: float | None = None,
    hi: float | None = None,
    positive: bool = False,
    error: type[Exception] = ValueError,
    unit: str = "",
) -> N:
    """`name` read as `kind` (int or float), `default` when unset or blank; `error` (with the name, the
    bound and the value) when it is not a finite number of that kind, not above 0 with `positive`, or
    outside [`lo`, `hi`]."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    what = ("an integer" if kind is int else "a number") + (f" of {unit}" if unit else "")
    try:
        value = kind(raw)
    except ValueError:
        raise error(f"{name} must be {what}, got {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise error(f"{name} must be {what}, got {raw[:40]!r}")
    if positive and value <= 0:
        raise error(f"{name} must be {what} above 0, got {raw[:40]!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise error(f"{name} must be between {lo:g} and {hi:g}{f' {unit}' if unit else ''}, got {raw[:40]!r}")
    return value
