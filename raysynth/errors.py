"""The exception hierarchy: every error a user can cause derives from :class:`RaysynthError`."""

from __future__ import annotations


class RaysynthError(Exception):
    """Base class of raysynth's errors; the CLI prints their message on one line and exits 2."""


class SpecError(RaysynthError):
    """A search-space file, key, type or range is wrong.

    The message names the dotted key the user wrote, the rule, and the value.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"`{key}`: {message}" if key else message)


class UnknownNameError(RaysynthError):
    """A name (method, dataset, classifier, FID backend) is not registered."""


class DatasetUnavailableError(RaysynthError):
    """A dataset's files are not on this machine and cannot be downloaded."""


class NonFiniteLossError(RaysynthError):
    """A method's training loss became NaN or infinite."""
