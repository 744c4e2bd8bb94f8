"""One exception hierarchy for every user-facing failure.

The CLI catches :class:`SmoothganError`, prints its message on one line and exits non-zero; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class SmoothganError(Exception):
    """Base class: the message is meant for the user, on one line."""

    exit_code: int = 1


class InputError(SmoothganError):
    """A file or argument the user gave is missing, unreadable or invalid (images, domains, options)."""

    exit_code = 2


class BundleError(SmoothganError):
    """A model bundle is missing, malformed, or does not match what is asked of it."""

    exit_code = 3


class CheckpointError(SmoothganError):
    """A checkpoint file cannot be imported (format, keys, shapes)."""

    exit_code = 3


class BackendError(SmoothganError):
    """An inference engine is unavailable or failed (missing package, device, stale engine)."""

    exit_code = 4


class DataError(SmoothganError):
    """A training or evaluation dataset is malformed."""

    exit_code = 2
