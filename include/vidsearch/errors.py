"""Typed errors: a permanent error fails a run at once, a transient one is worth retrying.

The orchestrator maps `PermanentError` to "fail without retry" and lets everything else (including
`TransientError`) go through its normal retry policy with backoff.
"""

from __future__ import annotations


class VidsearchError(Exception):
    """Base class for every error this library raises on purpose."""


class PermanentError(VidsearchError):
    """Retrying cannot help: bad input, bad parameters, a model that cannot be had."""


class InputError(PermanentError):
    """The source video (or a parameter describing it) is unusable."""


class ModelUnavailableError(PermanentError):
    """Model weights cannot be loaded from the hub id or folder given."""


class QualityGateError(PermanentError):
    """Data produced by a stage failed its quality checks."""


class NotFoundError(VidsearchError):
    """An unknown collection, video, frame, object or propagation (HTTP 404)."""


class TransientError(VidsearchError):
    """An infrastructure hiccup (network, storage, Weaviate 5xx): retry with backoff."""


def one_line(exc: BaseException, limit: int = 1000) -> str:
    """`exc` as one line for logs, catalog rows and exit messages: whitespace collapsed, the exception
    type when it has no message, at most `limit` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
