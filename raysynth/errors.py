"""The exception hierarchy: every error a user can cause derives from :class:`RaysynthError`."""

from __future__ import annotations

import difflib
from typing import Iterable


class RaysynthError(Exception):
    """Base class of raysynth's errors; the CLI prints their message on one line and exits 2.

    Raised inside a trial, a RaysynthError is deterministic (a bad configuration, a non-finite loss
    under a fixed seed): the trial fails at once and is not retried. Every subclass pickles with its
    message, so Ray can carry it from a worker to the driver.
    """


class SpecError(RaysynthError):
    """A search-space file, key, type or range is wrong.

    The message names the dotted key the user wrote, the rule, and the value.
    """

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"`{key}`: {message}" if key else message)

    def __reduce__(self):
        return type(self), (self.key, self.message)


class UnknownNameError(RaysynthError):
    """A name (method, dataset, classifier, FID backend) is not registered."""


class DatasetUnavailableError(RaysynthError):
    """A dataset's files are not on this machine and cannot be downloaded."""


class NonFiniteLossError(RaysynthError):
    """A loss (a method's, or an evaluation classifier's), an output or a metric became NaN or infinite."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch scheduler's preemption) during a sweep: it stops as on Ctrl-C, resumable."""


def did_you_mean(word: object, known: Iterable[str]) -> str:
    """``"did you mean `x`? "`` for the closest of ``known``, or ``""``: the one suggestion helper."""
    nearest = difflib.get_close_matches(str(word), list(known), n=1)
    return f"did you mean `{nearest[0]}`? " if nearest else ""


SHOWN_CHARACTERS = 200  # an echoed value is cut here: a message stays one short line


def shorten(text: str) -> str:
    """``text``, cut to :data:`SHOWN_CHARACTERS` with its length said (a bomb's value is never echoed whole)."""
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS] + f"... ({len(text)} characters)"
