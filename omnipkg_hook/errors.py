"""Every error pip-omni raises on purpose.

One base, :class:`OmnipkgError`; each subclass also inherits the builtin a caller
would already catch (``BubbleNotFoundError`` is a ``ModuleNotFoundError``,
``InvalidPinError`` a ``ValueError``...). A message quotes the bad input with
``!r``; ``hint`` says what to do next. The CLI prints ``message`` and ``hint``
on one line each and exits 1.
"""

from __future__ import annotations

__all__ = [
    "OmnipkgError",
    "InvalidPinError",
    "BubbleNotFoundError",
    "PinConflictError",
    "AlreadyImportedError",
    "StoreError",
    "StoreCorruptError",
    "WheelRejectedError",
    "PipError",
    "InterpreterError",
    "WorkerError",
    "WorkerCrashedError",
    "RemoteError",
    "WorkerTimeoutError",
    "DaemonError",
]


class OmnipkgError(Exception):
    """Base of every pip-omni error. ``hint`` is the next step for the user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class InvalidPinError(OmnipkgError, ValueError):
    """A requirement or ``OMNIPKG_PINS`` value that cannot be parsed."""


class BubbleNotFoundError(OmnipkgError, ModuleNotFoundError):
    """No stored version satisfies a pin for this interpreter."""

    def __init__(self, message: str, hint: str | None = None, *, name: str | None = None) -> None:
        OmnipkgError.__init__(self, message, hint)
        self.name = name  # ModuleNotFoundError's attribute


class PinConflictError(OmnipkgError, ImportError):
    """Two pins need versions of one distribution that no single version satisfies."""


class AlreadyImportedError(OmnipkgError, ImportError):
    """A name the pin would route is already imported from elsewhere."""


class StoreError(OmnipkgError, OSError):
    """The store cannot be read or written."""


class StoreCorruptError(StoreError):
    """A manifest or object in the store is damaged."""


class WheelRejectedError(OmnipkgError, ValueError):
    """A wheel failed validation; nothing of it was stored."""


class PipError(OmnipkgError, RuntimeError):
    """pip failed; ``log`` is the path of its full output."""

    def __init__(self, message: str, hint: str | None = None, *, log: str | None = None) -> None:
        super().__init__(message, hint)
        self.log = log


class InterpreterError(OmnipkgError, LookupError):
    """An interpreter could not be found, run, or is not supported."""


class WorkerError(OmnipkgError, RuntimeError):
    """A worker process (``omnipkg_hook.workers``) could not do what was asked."""


class WorkerCrashedError(WorkerError):
    """The worker died (or was stopped) while a call was pending; that call did not complete.

    The worker is started again on the next call; its namespace starts empty.
    """


class RemoteError(WorkerError):
    """Code run in a worker raised. ``remote_type`` is the qualified name of the exception
    class there, ``remote_message`` its ``str()``, ``remote_traceback`` the formatted
    traceback; ``stdout``/``stderr`` what the call printed before it raised.
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        remote_type: str = "",
        remote_message: str = "",
        remote_traceback: str = "",
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        super().__init__(message, hint)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.stdout = stdout
        self.stderr = stderr

    def __reduce__(self):
        return (_rebuild_remote_error, (self.message, self.hint, dict(self.__dict__)))


def _rebuild_remote_error(message, hint, state):
    err = RemoteError(message, hint)
    err.__dict__.update(state)
    return err


class WorkerTimeoutError(WorkerError, TimeoutError):
    """A call took longer than its timeout; the worker was killed and will be replaced."""


class DaemonError(WorkerError):
    """The worker daemon cannot be reached, started, trusted or authenticated."""
