"""Errors of the Levain client.

Every 4xx/5xx answer of the control API becomes an :class:`APIError` of the
class its ``code`` names, carrying the API's message, the field at fault and
the HTTP status. Failures of the command itself (a non-zero exit, a timeout)
are not errors unless asked for: :meth:`levain.ExecResult.check` raises
:class:`CommandFailed` or :class:`CommandTimedOut`.
"""

from __future__ import annotations

from typing import Any


class LevainError(Exception):
    """Base of every error this package raises."""


class ConnectionFailed(LevainError):
    """The supervisor could not be reached (no socket, refused, broken off)."""


class APIError(LevainError):
    """An error answer of the control API: ``{"error": {"code", "message", "field"}}``."""

    status: int
    code: str
    message: str
    field: str | None
    #: The errno name a file operation in the jail failed with (``EACCES``, ``ENOENT``, ...).
    errno: str | None

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 errno: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.errno = errno
        where = f" (field {field})" if field else ""
        super().__init__(f"{status} {code}{where}: {message}")


class InvalidRequest(APIError):
    """400: a bad field, query value, path or body; ``field`` names it."""


class Unauthorized(APIError):
    """401: the TCP listener wants a valid bearer token (``LEVAIN_TOKEN``)."""


class NotFound(APIError):
    """404: no such session, run, file or directory (or route)."""


class RequestTimeout(APIError):
    """408: the request's head did not arrive in time."""


class Conflict(APIError):
    """409: the object's state forbids it (a closed session, a run not running,
    a directory where a file is wanted, permission denied in the workspace, ...)."""


class PermissionDenied(Conflict):
    """409 from a file operation the jail user may not do (EACCES, EPERM, EROFS)."""


class TooLarge(APIError):
    """413: a body over ``limits.max_request``, a file over ``limits.max_file``."""


class InternalError(APIError):
    """500: the session log failed, or something unexpected."""


class SandboxFailure(APIError):
    """502/503: the session's jail could not be started, its harness is gone,
    or the supervisor is shutting down or full."""


_BY_CODE: dict[str, type[APIError]] = {
    "invalid_request": InvalidRequest,
    "unauthorized": Unauthorized,
    "not_found": NotFound,
    "request_timeout": RequestTimeout,
    "conflict": Conflict,
    "too_large": TooLarge,
    "internal_error": InternalError,
    "spawn_failed": SandboxFailure,
    "unavailable": SandboxFailure,
}

_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequest, 401: Unauthorized, 404: NotFound, 408: RequestTimeout,
    409: Conflict, 413: TooLarge, 500: InternalError, 502: SandboxFailure, 503: SandboxFailure,
}

_PERMISSION_ERRNOS = ("EACCES", "EPERM", "EROFS")


def error_from(status: int, body: Any, text: str) -> APIError:
    """The typed error for an error answer (its JSON ``body`` if it has one)."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("code"), str):
        code = err["code"]
        message = err.get("message") if isinstance(err.get("message"), str) else ""
        field = err.get("field") if isinstance(err.get("field"), str) else None
        errno = err.get("errno") if isinstance(err.get("errno"), str) else None
    else:
        code, message, field, errno = "http_" + str(status), text.strip()[:4096], None, None
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status, APIError)
    if cls is Conflict and errno in _PERMISSION_ERRNOS:
        cls = PermissionDenied
    return cls(status, code, message, field, errno)


class CommandFailed(LevainError):
    """Raised by :meth:`ExecResult.check` for a command that did not succeed."""

    def __init__(self, result: Any) -> None:
        self.result = result
        super().__init__(
            f"run {result.run_id} {result.status} with exit status {result.exit_status}"
            + (f": {result.error}" if result.error else "")
            + (f"\n{result.stderr[-2000:]}" if result.stderr else "")
        )


class CommandTimedOut(CommandFailed):
    """Raised by :meth:`ExecResult.check` for a command its timeout killed."""


class FileOperationFailed(LevainError):
    """One file of a batch (upload, download) failed: see its ``error``."""
