"""shmbroker's exceptions: one class per status code of the daemon's answers.

Every error from the daemon or the client library is a ``shmbroker.Error``
subclass carrying ``code`` (the status code's name, e.g. ``"NOT_FOUND"``)
and ``message`` (the daemon's words, e.g. which limit refused and its flag).
Where Python has a matching built-in exception the class derives from it
too, so ``except KeyError`` / ``except ValueError`` / ``except TimeoutError``
work as a Python programmer expects.
"""


class Error(Exception):
    """Base of every shmbroker error."""

    code = "UNKNOWN"

    def __init__(self, message="", code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self):
        return f"{self.code}: {self.message}"


class Cancelled(Error):
    code = "CANCELLED"


class Unknown(Error):
    code = "UNKNOWN"


class InvalidArgument(Error, ValueError):
    """Bad input: the message names the argument or the limit."""
    code = "INVALID_ARGUMENT"


class DeadlineExceeded(Error, TimeoutError):
    """A call's deadline (Client timeout, or attach's wait) passed."""
    code = "DEADLINE_EXCEEDED"


class NotFound(Error, LookupError):
    """No such buffer or lease (or it ended)."""
    code = "NOT_FOUND"


class AlreadyExists(Error):
    """A buffer of that name exists."""
    code = "ALREADY_EXISTS"


class PermissionDenied(Error, PermissionError):
    """The buffer's ACL or the lease's owner refuses this process."""
    code = "PERMISSION_DENIED"


class ResourceExhausted(Error):
    """Over a limit (capacity, buffers, leases, ...): the message names its flag."""
    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(Error):
    """Not possible in this state (e.g. sealing what another process maps
    writable, or a closed client)."""
    code = "FAILED_PRECONDITION"


class Aborted(Error):
    code = "ABORTED"


class OutOfRange(Error, ValueError):
    code = "OUT_OF_RANGE"


class Unimplemented(Error, NotImplementedError):
    code = "UNIMPLEMENTED"


class Internal(Error):
    code = "INTERNAL"


class Unavailable(Error, ConnectionError):
    """No daemon answers on the socket."""
    code = "UNAVAILABLE"


class DataLoss(Error):
    code = "DATA_LOSS"


class Unauthenticated(Error):
    code = "UNAUTHENTICATED"


# absl::StatusCode (= gRPC code) numbers.
_BY_CODE = {
    1: Cancelled, 2: Unknown, 3: InvalidArgument, 4: DeadlineExceeded,
    5: NotFound, 6: AlreadyExists, 7: PermissionDenied, 8: ResourceExhausted,
    9: FailedPrecondition, 10: Aborted, 11: OutOfRange, 12: Unimplemented,
    13: Internal, 14: Unavailable, 15: DataLoss, 16: Unauthenticated,
}


def from_status(code, message):
    """The exception for status `code` (an int) with `message`; the binding
    raises what this returns."""
    cls = _BY_CODE.get(code, Unknown)
    return cls(message, None if cls is not Unknown or code == 2 else f"CODE_{code}")


__all__ = ["Error"] + [c.__name__ for c in _BY_CODE.values()]
