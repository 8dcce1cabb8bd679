"""Domain errors raised by operations and auth; ``web/problems.py`` maps them to HTTP.

Each class names one kind of failure from the spec's error-type registry (or
one of our documented extensions), so the HTTP edge needs one table only.
"""

from __future__ import annotations


class WASError(Exception):
    """Base of every error a client may be told about.

    ``detail`` is safe to send to the client; ``pointer`` is a JSON pointer
    into the request body (``#/controller``) when the error is about a field.
    """

    def __init__(self, detail: str = "", pointer: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.pointer = pointer


class NotFound(WASError):
    """The target is absent, or the caller may not know whether it exists."""


class InvalidId(WASError):
    """A space id or resource path is not URL-safe, or is too long."""


class InvalidRequestBody(WASError):
    """The request body is missing, not JSON, or has a wrong member."""


class ControllerMismatch(WASError):
    """A space create is not signed by the body's controller."""


class MissingAuthorization(WASError):
    """No Authorization header where one is required (and saying so leaks nothing)."""


class InvalidAuthorization(WASError):
    """The Authorization header is malformed, expired or does not verify."""


class RepeatedAuthorization(WASError):
    """An authorization header, or a parameter inside one, is repeated: which one counts is anyone's guess.

    Refused (400 ``invalid-authorization-header``) whatever the profile, rather than
    trusting the first or the last: a proxy and the server might pick differently.
    """


class InvalidDigest(WASError):
    """The body does not match its ``Digest`` / ``Content-Digest``, or a required one is missing."""


class Forbidden(WASError):
    """Legacy profile only: a valid signature by a DID that is not the controller."""


class SpaceExists(WASError):
    """A create-only request met a space that already exists."""


class UnsupportedEncryptionScheme(WASError):
    """A collection declares an ``encryption`` scheme this server does not enforce (it enforces none)."""


class ReservedId(WASError):
    """The path names one of the spec's reserved segments for a method it does not have there."""


class IdConflict(WASError):
    """A create-only request (POST with an id, ``If-None-Match`` aside) met an id already taken."""


class PreconditionFailed(WASError):
    """An explicit ``If-Match`` / ``If-None-Match: *`` was false: nothing was written."""


class InvalidCursor(WASError):
    """A pagination ``cursor`` is malformed or no longer usable (told only after authorization)."""


class InvalidParameter(WASError):
    """A query parameter (pagination ``limit``) that is not what the operation accepts.

    The spec's registry has no type for a bad query parameter: ours is a
    documented extension, ``invalid-parameter`` (400), told after authorization.
    """


class RangeNotSatisfiable(WASError):
    """A ``Range`` none of whose bytes exist; ``size`` goes in ``Content-Range: bytes */size``."""

    def __init__(self, size: int) -> None:
        super().__init__(f"The resource has {size} bytes.")
        self.size = size


class MissingContentType(WASError):
    """A resource write without ``Content-Type`` where the profile requires one."""


class UnsupportedBackend(WASError):
    """A collection names a backend this space does not offer."""


class UnsupportedOperation(WASError):
    """An optional operation this server (or this backend) does not implement."""


class Unavailable(WASError):
    """The server is shedding load or storage is briefly unreachable: retry later.

    ``retry_after`` is in seconds.
    """

    def __init__(self, detail: str = "", retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class StorageFailure(WASError):
    """Storage failed in a way a retry will not fix (the detail is logged, not sent)."""


class PayloadTooLarge(WASError):
    """The request body is larger than the server accepts (``WAS_MAX_UPLOAD_BYTES``)."""


class BadRequest(WASError):
    """The HTTP message itself is malformed: request line, header syntax, ``Host``, body framing.

    Not in the spec's registry (it assumes well-formed HTTP): our documented extension ``bad-request``.
    """


class UriTooLong(WASError):
    """The request line is longer than the server reads (414)."""


class HeaderFieldsTooLarge(WASError):
    """The header block is larger than the server reads, or has too many fields (431)."""


class RequestTimeout(WASError):
    """The client started a request and stopped sending it for the idle timeout (408)."""


class MethodNotAllowed(WASError):
    """The target exists as a route but not for this method; ``allowed`` lists those it has."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__(f"Allowed methods: {', '.join(allowed)}.")
        self.allowed = allowed
