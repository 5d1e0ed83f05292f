"""Levain: a client of the sandbox supervisor's control API.

    import levain

    with levain.Client() as client:                 # LEVAIN_CONNECT or /run/levain/levain.sock
        with client.create_session(policy="default") as session:
            session.files.write("hello.py", "print('hi')\n")
            result = session.exec(["python3", "hello.py"], timeout=30)
            print(result.exit_status, result.stdout)

``levain.aio.AsyncClient`` is the same for asyncio.
"""

from ._core import Address
from .aio import AsyncClient, AsyncFiles, AsyncRun, AsyncSession
from .client import Client, Files, Run, Session
from .errors import (
    APIError,
    CommandFailed,
    CommandTimedOut,
    Conflict,
    ConnectionFailed,
    FileOperationFailed,
    InternalError,
    InvalidRequest,
    LevainError,
    NotFound,
    PermissionDenied,
    RequestTimeout,
    SandboxFailure,
    TooLarge,
    Unauthorized,
)
from .models import Event, ExecResult, FileInfo, FileResult, RunInfo, SessionInfo

__version__ = "0.1.0"

__all__ = [
    "Address", "AsyncClient", "AsyncFiles", "AsyncRun", "AsyncSession", "Client", "Files", "Run", "Session",
    "APIError", "CommandFailed", "CommandTimedOut", "Conflict", "ConnectionFailed", "FileOperationFailed",
    "InternalError", "InvalidRequest", "LevainError", "NotFound", "PermissionDenied", "RequestTimeout",
    "SandboxFailure", "TooLarge", "Unauthorized",
    "Event", "ExecResult", "FileInfo", "FileResult", "RunInfo", "SessionInfo",
]
