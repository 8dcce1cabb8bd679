"""The one S3 client a process shares: boto3 with its retries and timeouts, less per-call CPU.

botocore spends one to two milliseconds of CPU on every call (about 2 ms on
the 2-core development VM, by profile: ~40% sending and reading HTTP through
urllib3 and http.client, ~20% SigV4 signing, the rest building the request,
event hooks and parsing) and one server process makes two or three per
request, so what botocore does per call and we do not need is switched off
here, once:

- parameter validation (``parameter_validation=False``): every call's
  arguments are built by ``s3_bucket.py``, never by a user;
- checksums computed by botocore only where S3 requires them
  (S3-compatible servers that predate flexible checksums, Ceph or older
  MinIO, work too; multipart parts carry a CRC32 header that
  ``s3_upload.py`` computes, which Ceph RGW 16 accepts);
- botocore's ``dateutil`` timestamp parser (about 0.25 ms a GetObject);
- handlers for features we never use: SSE-C keys, idempotency tokens,
  user metadata, the Lambda recursion header, the ``Expires`` header, and
  ``Expect: 100-continue`` (a whole extra round trip before every
  PutObject's body); and telemetry: the ``amz-sdk-*`` retry headers and
  the User-Agent rebuilt a second time per call;
- the endpoint rules evaluated per call: the endpoint depends only on the
  operation, the bucket and the client's settings, so it is kept per
  (operation, bucket, settings) after the first call;
- the connection pool looked up from the whole URL per call: it is kept
  per origin;
- response headers looked up one by one for every header the operation
  could return (about 70 lookups a GetObject): the headers a response has
  are matched against the modeled ones instead (same result).

Credentials and a custom endpoint come only through boto3's own chain
(``AWS_*`` variables, shared files, instance or task roles, SSO;
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import boto3
import botocore.handlers
import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.parsers import ResponseParserFactory, RestXMLParser

__all__ = ["S3Timeouts", "make_client", "parse_timestamp"]

#: botocore's built-in handlers that do nothing for the calls ``s3_bucket.py`` makes.
_UNUSED_HANDLERS = frozenset(
    {
        "validate_ascii_metadata",  # we send no user metadata
        "sse_md5",  # no SSE-C customer keys
        "generate_idempotent_uuid",  # S3 has no idempotency tokens
        "add_expect_header",  # Expect: 100-continue, an extra round trip per PutObject
        "add_recursion_detection_header",  # AWS Lambda only
        "inject_api_version_header_if_needed",  # not S3's
        "handle_expires_header",  # scans the output shape per call; we never read Expires
        "add_retry_headers",  # amz-sdk-* telemetry headers: two more headers to sign and send
    }
)
#: Endpoints kept per client: (operation, bucket, settings) is a handful in practice.
ENDPOINT_CACHE_SIZE = 256
#: Connection pools kept per client, by origin: below urllib3's own ``num_pools`` (10), so it evicts none.
POOL_CACHE_SIZE = 8


@dataclasses.dataclass(frozen=True)
class S3Timeouts:
    """How long one S3 call may take (``WAS_S3_CONNECT_TIMEOUT``, ``_READ_TIMEOUT``, ``_MAX_ATTEMPTS``).

    botocore's ``standard`` retry mode makes up to ``attempts`` tries, each
    at most ``connect`` seconds to connect and ``read`` seconds without a
    byte of the answer, so an S3 that hangs fails the call (503) within
    ``bound()`` seconds.
    """

    connect: float = 3
    read: float = 15
    attempts: int = 3

    def bound(self) -> float:
        """The longest one call can take when S3 hangs or throttles: every attempt times out.

        botocore's back-off before attempt ``k`` (from 2) is at most 2**(k-2)
        seconds when throttled (50 ms times that otherwise): 2**(attempts-1) - 1 in all.
        """
        return self.attempts * (self.connect + self.read) + float((1 << (self.attempts - 1)) - 1)


def make_client(pool_size: int, timeouts: S3Timeouts | None = None) -> Any:
    """One S3 client per process, with explicit timeouts and retries (``S3Timeouts``).

    Credentials and a custom endpoint come only through boto3's own chain
    (``AWS_*`` variables, shared files, instance or task roles, SSO;
    ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``).  Checksums are sent
    only when S3 requires them, so S3-compatible servers that predate
    flexible checksums (Ceph, older MinIO) work too.
    """
    timeouts = timeouts or S3Timeouts()
    config = Config(
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.read,
        retries={"mode": "standard", "total_max_attempts": timeouts.attempts},  # max_attempts: retries
        max_pool_connections=max(10, 2 * pool_size + 2),
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        parameter_validation=False,
    )
    core = botocore.session.get_session()
    parsers = HeadersFirstParserFactory()
    parsers.set_parser_defaults(timestamp_parser=parse_timestamp)
    core.register_component("response_parser_factory", parsers)
    client = boto3.session.Session(botocore_session=core).client("s3", config=config)
    events = client.meta.events
    for entry in botocore.handlers.BUILTIN_HANDLERS:
        event, handler = entry[0], entry[1]
        if getattr(handler, "__name__", "") in _UNUSED_HANDLERS:
            events.unregister(event, handler)
    agent = getattr(client, "_user_agent_creator", None)
    rebuild = getattr(agent, "rebuild_and_replace_user_agent_handler", None)
    if rebuild is not None:  # the User-Agent built per call already; rebuilt only for telemetry
        events.unregister("request-created.s3", rebuild)
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    manager = getattr(session, "_manager", None)
    if manager is not None and hasattr(manager, "connection_from_url"):
        manager.connection_from_url = CachedPools(manager.connection_from_url)
    events.register("before-sign.s3.UploadPart", UnsignedPartPayload(client.meta.config))
    resolver = getattr(client, "_ruleset_resolver", None)
    if resolver is not None and hasattr(resolver, "_get_customized_builtins"):
        resolver.construct_endpoint = CachedEndpoints(resolver)
    return client


class UnsignedPartPayload:
    """Over https, a part's body is not SHA-256 hashed for its signature (``UNSIGNED-PAYLOAD``).

    Hashing is most of the CPU a large upload costs us (1 ms a MiB); botocore
    skips it on its own only over https with a checksum header, which we do
    not send (``request_checksum_calculation``).  Over https TLS already
    protects the part in transit; over plain http the signed hash is the only
    thing that does (against a corrupting or meddling hop), so there it stays.
    """

    def __init__(self, config: Config) -> None:
        s3: Any = {**(getattr(config, "s3", None) or {}), "payload_signing_enabled": False}
        self._config = config.merge(Config(s3=s3))

    def __call__(self, request: Any, **_: Any) -> None:
        if str(getattr(request, "url", "")).startswith("https://"):
            request.context["client_config"] = self._config


class CachedEndpoints:
    """``construct_endpoint`` remembered per (operation, bucket, built-in settings).

    S3's endpoint rules read only the bucket among a call's parameters
    (``Key``, ``Prefix`` and ``CopySource`` are declared but never used),
    the operation's static parameters, and the built-ins (region, endpoint
    URL, path style...), which the ``before-endpoint-resolution`` handlers
    still compute per call, so a region redirect learnt later still changes
    the key.  Bounded: cleared when full.
    """

    def __init__(self, resolver: Any, size: int = ENDPOINT_CACHE_SIZE) -> None:
        self._resolver = resolver
        self._construct: Callable[..., Any] = resolver.construct_endpoint
        self._size = size
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        self.misses = 0

    def __call__(self, operation_model: Any, call_args: Any, request_context: Any) -> Any:
        args = call_args or {}
        builtins = self._resolver._get_customized_builtins(operation_model, args, request_context or {})
        key = (operation_model.name, args.get("Bucket"), tuple(sorted(builtins.items())))
        try:
            found = self._cache.get(key)
        except TypeError:  # a built-in we cannot key on (none today): resolve as botocore would
            return self._construct(
                operation_model=operation_model, call_args=call_args, request_context=request_context
            )
        if found is not None:
            return found
        result = self._construct(
            operation_model=operation_model, call_args=call_args, request_context=request_context
        )
        with self._lock:
            self.misses += 1
            if len(self._cache) >= self._size:
                self._cache.clear()
            self._cache[key] = result
        return result


class CachedPools:
    """urllib3's ``connection_from_url`` remembered per origin (``scheme://host:port``).

    botocore asks for the pool on every call, and urllib3 parses the whole
    URL and normalises a pool key each time (about 5% of a call's
    instructions, by callgrind); the pool depends only on the origin.  A pool
    the manager has closed since is asked for again.  Bounded: cleared when full.
    """

    def __init__(self, from_url: Callable[..., Any], size: int = POOL_CACHE_SIZE) -> None:
        self._from_url = from_url
        self._size = size
        self._pools: dict[str, Any] = {}

    def __call__(self, url: str, pool_kwargs: Any = None) -> Any:
        if pool_kwargs is not None:
            return self._from_url(url, pool_kwargs)
        scheme, sep, rest = url.partition("://")
        origin = scheme + sep + rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        pool = self._pools.get(origin)
        if pool is None or getattr(pool, "pool", None) is None:  # unknown, or closed by the manager
            pool = self._from_url(url)
            if origin not in self._pools and len(self._pools) >= self._size:
                self._pools.clear()
            self._pools[origin] = pool
        return pool


class HeadersFirstParser(RestXMLParser):
    """S3's parser, matching the headers a response has instead of trying every modeled one."""

    #: Output shape name -> (lower-case header -> (member, shape), members at other locations).
    _plans: dict[str, tuple[dict[str, tuple[str, Any]], list[str]]] = {}

    def _parse_non_payload_attrs(
        self, response: dict[str, Any], shape: Any, member_shapes: Any, final_parsed: dict[str, Any]
    ) -> None:
        plan = self._plans.get(shape.name)  # S3's output shape names are unique
        if plan is None:
            plan = self._plans[shape.name] = _plan(member_shapes)
        by_header, others = plan
        if others:
            # Status codes and header maps (x-amz-meta-*): botocore's own way.
            super()._parse_non_payload_attrs(  # type: ignore[misc]
                response, shape, {name: member_shapes[name] for name in others}, final_parsed
            )
        for header, value in response["headers"].items():
            hit = by_header.get(header.lower())
            if hit is not None:
                final_parsed[hit[0]] = self._parse_shape(hit[1], value)  # type: ignore[attr-defined]


def _plan(member_shapes: Any) -> tuple[dict[str, tuple[str, Any]], list[str]]:
    by_header: dict[str, tuple[str, Any]] = {}
    others: list[str] = []
    for name in member_shapes:
        member = member_shapes[name]
        location = member.serialization.get("location")
        if location == "header":
            by_header[member.serialization.get("name", name).lower()] = (name, member)
        elif location is not None:
            others.append(name)
    return by_header, others


class HeadersFirstParserFactory(ResponseParserFactory):
    """botocore's factory, with ``HeadersFirstParser`` for S3's protocol."""

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "rest-xml":
            return HeadersFirstParser(**self._defaults)  # type: ignore[attr-defined]
        return super().create_parser(protocol_name)


def parse_timestamp(value: str) -> datetime:
    """S3's two timestamp forms (RFC 7231 headers, ISO 8601 in XML) without dateutil.

    botocore's default parser costs ~0.25 ms of CPU a request, about 15% of
    a GetObject: worth it on a server bound by one core.
    """
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed: datetime = botocore.utils.parse_timestamp(value)
        return parsed
