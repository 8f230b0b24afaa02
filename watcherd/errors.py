"""Exception classes that carry what the caller needs to decide what happens next."""

from __future__ import annotations


class WatcherdError(Exception):
    """Base class of every error watcherd raises on purpose."""


class ConfigError(WatcherdError):
    """The configuration is invalid; the message names the file, the key and what is expected."""


class JournalError(WatcherdError):
    """The journal cannot be opened or used; the message says what to do."""


class SourceError(WatcherdError):
    """A source file cannot be transcribed as it is (empty, too large, unreadable...).

    ``transient`` is true when the same file may succeed later without the user's help
    (it is still being written, it vanished for a moment).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class GladiaError(WatcherdError):
    """A failed call to the Gladia API, with the details Gladia returned.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    ``maybe_sent`` is false only when the request certainly never reached the server
    (the connection could not be opened), so a create that failed this way made no job.
    ``malformed`` is true when the server answered (2xx) with a body that cannot be used: not
    an outage, so a file whose answers stay unusable fails after a budget instead of waiting.
    ``idempotent`` is true when the failed request was a read (GET): repeating it is harmless,
    so it is retried soon, never left to a long backoff.
    """

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        call_id: str | None = None,
        validation_errors: tuple[str, ...] = (),
        maybe_sent: bool = True,
        retry_after: float | None = None,
        malformed: bool = False,
        idempotent: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.call_id = call_id
        self.validation_errors = validation_errors
        self.maybe_sent = maybe_sent
        self.retry_after = retry_after
        self.malformed = malformed
        self.idempotent = idempotent

    def describe(self) -> str:
        """One line for logs and ``status``: status code, message, validation errors, ids."""
        text = self.message if self.status is None else f"HTTP {self.status}: {self.message}"
        if self.validation_errors:
            text += " (" + "; ".join(self.validation_errors) + ")"
        if self.request_id:
            text += f" [request {self.request_id}]"
        return text


class TransientGladiaError(GladiaError):
    """A failure worth retrying later: network trouble, 408, 429, 5xx.

    ``retry_after`` holds the server's ``Retry-After`` in seconds when it sent one.
    """

    transient = True


class PermanentGladiaError(GladiaError):
    """A failure that retrying the same request will not fix (4xx validation, bad media)."""


class AuthError(PermanentGladiaError):
    """The API key is missing or wrong (401): all remote work must pause.

    A 403 is not this: it refuses one request (a feature the plan lacks, a quota), and only
    the file that made it fails.
    """


class JobNotFound(PermanentGladiaError):
    """The job id is unknown to Gladia (404): deleted, expired, or never existed."""
