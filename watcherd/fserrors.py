"""One classification of the errors the file system raises, used by every step that touches files.

The watcher, hashing, upload and output writing all ask :func:`classify` what an ``OSError``
means, so the same errno leads to the same decision wherever it happens:

- ``missing``: the path is not there (ENOENT, ENOTDIR). The source may be gone, or its storage
  away; the caller checks which.
- ``transient``: the same call may work later without anyone's help (EIO, ESTALE, ENOTCONN,
  EMFILE, ENFILE, ETIMEDOUT, EAGAIN, EINTR, EBUSY, ENOMEM, EHOSTDOWN ...): retry with backoff.
- ``space``: no room (ENOSPC, EDQUOT, EFBIG for outputs): wait for a person or a cleanup, retry.
- ``readonly``: the file system is mounted read-only (EROFS): outputs cannot be written there.
- ``permission``: EACCES, EPERM: a person must change the permissions.
- ``permanent``: retrying the same file will not help (ENAMETOOLONG, ELOOP, EISDIR, EINVAL,
  ENXIO, ENODEV, EOPNOTSUPP ...).

An errno this table does not know is taken as ``transient``: retrying with backoff, then failing
with the reason after the retry budget, is the safe answer to the unforeseen.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Literal

__all__ = ["FsErrorKind", "FsProblem", "classify"]

FsErrorKind = Literal["missing", "transient", "space", "readonly", "permission", "permanent"]


def _codes(*names: str) -> frozenset[int]:
    # Not every platform defines every errno name (EDQUOT, ESTALE, ENOTCONN...).
    return frozenset(getattr(errno, name) for name in names if hasattr(errno, name))


_MISSING = _codes("ENOENT", "ENOTDIR")
_SPACE = _codes("ENOSPC", "EDQUOT", "EFBIG")
_READONLY = _codes("EROFS")
_PERMISSION = _codes("EACCES", "EPERM")
_PERMANENT = _codes(
    "ENAMETOOLONG", "ELOOP", "EISDIR", "EINVAL", "ENXIO", "ENODEV", "EOPNOTSUPP", "ENOTSUP",
    "EBADF", "ESPIPE", "EILSEQ", "EXDEV", "ENOEXEC", "EFAULT", "EMLINK", "ENOTEMPTY",
)
_TRANSIENT = _codes(
    "EIO", "ESTALE", "ENOTCONN", "EMFILE", "ENFILE", "ETIMEDOUT", "EAGAIN", "EWOULDBLOCK",
    "EINTR", "EBUSY", "ENOMEM", "EHOSTDOWN", "EHOSTUNREACH", "ENETDOWN", "ENETUNREACH",
    "ECONNRESET", "ECONNABORTED", "ECONNREFUSED", "ENOLCK", "ETXTBSY", "EREMOTEIO", "ENOLINK",
    "ECOMM", "EPROTO", "ENOBUFS", "EDEADLK", "EKEYEXPIRED", "ENOMEDIUM",
)

_WHAT_TO_DO: dict[FsErrorKind, str] = {
    "missing": "it is looked for again when it comes back",
    "transient": "retrying later by itself",
    "space": "free some space (or raise the quota); writing is retried later",
    "readonly": "the folder is on a read-only file system: remount it read-write",
    "permission": "give the watcherd user access to it",
    "permanent": ("this file cannot be processed as it is: check it (and the storage it is "
                  "on), then replace it or run `watcherd retry` on it"),
}


@dataclass(frozen=True)
class FsProblem:
    """What an ``OSError`` means for the file it happened to."""

    kind: FsErrorKind
    errno: int | None
    message: str

    @property
    def retryable(self) -> bool:
        """True when trying again later may succeed without a person's help."""
        return self.kind in ("missing", "transient", "space")

    @property
    def hint(self) -> str:
        """What a person (or the daemon) does about it, in words."""
        return _WHAT_TO_DO[self.kind]


def _describe_errno(code: int | None) -> str:
    """``strerror`` with the symbolic name, e.g. ``Input/output error (EIO)``."""
    if code is None:
        return "unknown error"
    name = errno.errorcode.get(code)
    try:
        text = os.strerror(code)
    except ValueError:
        text = f"error {code}"
    return f"{text} ({name})" if name else text


def classify(exc: OSError) -> FsProblem:
    """The kind of an ``OSError`` raised by stat, open, read, write, rename or statvfs."""
    code = exc.errno
    kind: FsErrorKind
    if isinstance(exc, FileNotFoundError | NotADirectoryError) or code in _MISSING:
        kind = "missing"
    elif isinstance(exc, PermissionError) or code in _PERMISSION:
        kind = "permission"
    elif isinstance(exc, IsADirectoryError) or code in _PERMANENT:
        kind = "permanent"
    elif code in _SPACE:
        kind = "space"
    elif code in _READONLY:
        kind = "readonly"
    else:
        # _TRANSIENT and every errno we have never heard of: retry, within a budget.
        kind = "transient"
    return FsProblem(kind, code, _describe_errno(code) if code is not None else str(exc))
