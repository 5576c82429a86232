"""HTTP byte ranges (RFC 9110 §14) for the ranged video route: parse a `Range` header against a size.

`parse_range(header, size)` answers one of:

* `None`: serve the whole body (200): no header, or a unit other than `bytes` (which a server must
  ignore);
* `(start, end)`: serve bytes `start..end` inclusive (206 with `Content-Range: bytes start-end/size`);
* `Unsatisfiable`: 416 with `Content-Range: bytes */size` — no range overlaps the body, or the header
  is malformed (`bytes=5-2`, `bytes=x-`, `bytes=-0`, ...).

Forms: `bytes=a-b` (b past the end is clipped), `bytes=a-` (to the end), `bytes=-n` (the last n bytes,
the whole body when n >= size). Several ranges (`bytes=0-1,5-9`): the first satisfiable one is served,
alone, as a single-part 206 (no multipart/byteranges); its `Content-Range` says which it is. Media
players ask for one range at a time.
"""

from __future__ import annotations

import re

MAX_RANGE_SPECS = 100  # more than this many comma-separated ranges is refused (416), not scanned
_SPEC = re.compile(r"^(\d*)-(\d*)$")


class Unsatisfiable(Exception):
    """No requested range can be served: answer 416 with `Content-Range: bytes */size`."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range to serve for `header` on a body of `size` bytes (see the module)."""
    if header is None:
        return None
    unit, sep, specs = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None  # a unit we do not know: ignore the header (RFC 9110 §14.2)
    parts = [p.strip() for p in specs.split(",")]
    parts = [p for p in parts if p]  # "bytes=0-1, ,2-3": empty list elements are allowed
    if not parts or len(parts) > MAX_RANGE_SPECS:
        raise Unsatisfiable(header)
    found: tuple[int, int] | None = None
    for part in parts:
        match = _SPEC.match(part)
        if match is None or match.group(0) == "-":
            raise Unsatisfiable(header)  # malformed: the whole header is invalid
        first, last = match.group(1), match.group(2)
        if first == "":
            suffix = int(last)
            if suffix == 0:
                raise Unsatisfiable(header)
            candidate = (max(0, size - suffix), size - 1) if size > 0 else None
        else:
            start = int(first)
            end = int(last) if last else size - 1
            if last and end < start:
                raise Unsatisfiable(header)
            candidate = (start, min(end, size - 1)) if start < size else None
        if candidate is not None and found is None:
            found = candidate
    if found is None:
        raise Unsatisfiable(header)
    return found
