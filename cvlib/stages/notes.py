"""What the stages tell the reader when a part of the report cannot be computed.

A part that does not apply says so in the reader's words (``NOT_APPLICABLE``). A part that could
not be computed on this shop (a baseline that does not converge, too few customers for clusters)
never takes the report down: the step is :func:`optional`, its failure is kept with the reason
(:func:`skip`), and the stage's report step writes every reason into the run
(``Workspace.add_skipped``), so the first screen of the report lists what was left out and why.
Only bad input (exit 2) or a failure of the core path (exit 1) stops a run.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

# Fewer returning test customers than this and the model comparison is noise (olist: 8).
MIN_RETURNING = 30


# Why a part of the report is empty, in the reader's words.
NOT_APPLICABLE = {
    "value": "this dataset has no orders linked to customers, so customer value and churn do "
             "not apply",
    "sentiment": "this dataset has no reviews with both text and a rating",
    "recommendations": "this dataset has no product-level purchases before and after the cutoff",
    "aspects": "no labelled aspect sample exists for this dataset's reviews",
}

log = logging.getLogger("cvlib")

# What this process (one notebook's kernel) skipped since the stage's report last took them:
# section -> reason.
_SKIPPED: dict[str, str] = {}

F = TypeVar("F", bound=Callable[..., Any])


def reason_of(error: BaseException) -> str:
  """One line for the reader: the error's kind and the first line of its message."""
  message = str(error).strip().splitlines()[0] if str(error).strip() else ""
  message = message if len(message) <= 240 else message[:237] + "..."
  return f"{type(error).__name__}: {message}" if message else type(error).__name__


def skip(section: str, reason: str) -> None:
  """Records that ``section`` is not part of this report, and why."""
  _SKIPPED[section] = reason
  log.warning("%s skipped: %s", section, reason)


def take_skipped() -> dict[str, str]:
  """What was skipped since the last call (the stage's report step writes them into the run)."""
  out = dict(_SKIPPED)
  _SKIPPED.clear()
  return out


def optional(section: str, fallback: Callable[..., Any] | None = None) -> Callable[[F], F]:
  """Makes a step optional: when it raises, the run goes on with ``fallback(*args, **kwargs)``
  (None by default) and the report says that ``section`` was skipped and why."""

  def wrap(step: F) -> F:
    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> Any:
      try:
        return step(*args, **kwargs)
      except Exception as e:  # any failure of an optional part; KeyboardInterrupt still stops
        skip(section, reason_of(e))
        return fallback(*args, **kwargs) if fallback is not None else None

    return run  # type: ignore[return-value]

  return wrap


def attempt(section: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
  """``fn(*args, **kwargs)`` as an :func:`optional` step: None, with the reason, when it raises."""
  return optional(section)(fn)(*args, **kwargs)
