"""Retries for transient I/O: capped exponential backoff with jitter; permanent errors go straight through."""

from __future__ import annotations

import errno
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# OSErrors worth a second try: the network or the remote store hiccupped, the data is not wrong.
_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED,
                     errno.EPIPE, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EBUSY}
# Permanent: asking again gives the same answer.
_PERMANENT = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class TransientIOError(OSError):
    """Raised by file systems for a failure that may pass (an HTTP 5xx, a dropped connection)."""


def is_transient(err: BaseException) -> bool:
    """Whether an I/O error may go away if the same call is made again."""
    for cause in _causes(err):
        if isinstance(cause, _PERMANENT):
            return False
        if isinstance(cause, (TransientIOError, TimeoutError, ConnectionError)):
            return True
        if isinstance(cause, OSError) and cause.errno in _TRANSIENT_ERRNOS:
            return True
    return False


def _causes(err: BaseException):
    # Beam wraps file system errors (BeamIOError.exception_details); walk them and the __cause__ chain.
    seen = 0
    while err is not None and seen < 8:
        yield err
        details = getattr(err, "exception_details", None)
        if isinstance(details, dict):
            for inner in details.values():
                if isinstance(inner, BaseException):
                    yield from _causes(inner)
        err = err.__cause__ or err.__context__
        seen += 1


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # calls in all, the first one included
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay(self, retry: int) -> float:
        """Sleep before retry number `retry` (1-based): base * 2^(retry-1), capped, with +-25% jitter."""
        capped = min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))
        return capped * random.uniform(0.75, 1.25)


def retry_call(fn: Callable[[], T], policy: RetryPolicy, what: str,
               on_retry: Optional[Callable[[BaseException], None]] = None,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """fn(), called again after a transient error, at most policy.attempts times in all."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - classified right here, re-raised unless transient
            if attempt == policy.attempts or not is_transient(err):
                raise
            if on_retry:
                on_retry(err)
            pause = policy.delay(attempt)
            # The error type only: messages of remote stores can carry signed urls.
            log.warning("%s: transient %s, retry %d of %d in %.1f s", what, type(err).__name__,
                        attempt, policy.attempts - 1, pause)
            sleep(pause)
    raise AssertionError("unreachable")
