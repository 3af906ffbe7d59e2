"""How a failed call ends a row, or the whole push (pure).

A call's error is one of: fatal for the run (the credentials refused, the API clearly unreachable:
every further call would fail the same way), 'rejected' (the API refused these values: a 4xx), or
'failed' (transient: tried again on the next run). A *write* whose answer was lost (errors.may_have_landed,
or an earlier attempt's) may have been applied: its outcome is unknown, so it stays 'pending' for the
next run to resolve by reading ChartMogul, never 'failed' as if nothing had happened.
"""

from __future__ import annotations

from cm_pipeline.chartmogul.errors import (
    AuthenticationError,
    ChartMogulError,
    ForbiddenError,
    TransportError,
    UnreachableError,
    is_retriable,
    may_have_landed,
)


class FatalPushError(RuntimeError):
    """A failure no row can get past (bad credentials, account blocked, API unreachable): the run stops."""


def fatal_reason(err: ChartMogulError) -> str | None:
    """Why the run must stop on this error, or None when only the row is affected."""
    if isinstance(err, (AuthenticationError, ForbiddenError)):
        return f"ChartMogul refused the credentials: {err}"
    if isinstance(err, UnreachableError):
        return err.message
    return None


def classify(err: ChartMogulError) -> str:
    """'failed' (transient, try again next run) or 'rejected' (the API refused these values).

    Raises FatalPushError for 401/403 and an unreachable API: every further call would fail the same way.
    """
    reason = fatal_reason(err)
    if reason is not None:
        raise FatalPushError(reason) from None
    if isinstance(err, TransportError) or is_retriable(err) or err.status is None:
        return "failed"
    if 400 <= err.status < 500:
        return "rejected"
    return "failed"


def outcome_unknown(err: ChartMogulError) -> bool:
    """Whether a failed write may have been applied all the same (its last attempt's answer or an
    earlier one's was lost): then only a read can tell."""
    return may_have_landed(err) or bool(getattr(err, "after_lost_answer", False))
