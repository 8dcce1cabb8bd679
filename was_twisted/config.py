"""One frozen ``Settings``, built from the environment the existing server reads.

Every invalid value stops start-up with one sentence naming the variable, so
an operator never finds out about a typo from a failing request.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-_]{1,253}[a-z0-9]")
BACKENDS = ("filesystem", "memory", "s3")
PROFILES = ("spec", "legacy")


class ConfigError(ValueError):
    """A setting is invalid; the message is one sentence naming the variable."""


#: A space record kept longer than this would let a controller change elsewhere go unseen too long.
MAX_SPACE_CACHE_SECONDS = 300


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to start, validated."""

    backend: str = "filesystem"
    root_dir: str = "./was_data"
    bucket: str = ""
    prefix: str = ""
    profile: str = "spec"
    max_signature_lifetime: int = 3600
    clock_skew: int = 300
    threads: int = 16
    max_backlog: int = 256
    access_log: bool = True
    max_upload: int = 1 << 30
    #: Seconds a SIGTERM waits for requests in flight before aborting them (under TimeoutStopSec).
    shutdown_grace: int = 25
    #: The origin clients reach us at (``https://storage.example.com``); ``""``: from each request.
    public_url: str = ""
    require_digest: bool = False
    #: Origins browsers may call from: ``("*",)`` any (the default), ``()`` CORS off.
    cors_origins: tuple[str, ...] = ("*",)
    #: Proxies whose forwarded headers count (normalized networks, ``127.0.0.0/8``); ``()``: none.
    trusted_proxies: tuple[str, ...] = ()
    #: The spec's strict collections: a resource write at ``/space/S/c/...`` needs collection ``c`` created.
    strict_collections: bool = False
    #: Worker processes sharing the listening sockets (``WAS_WORKERS``, ``--workers``); 1: no parent.
    workers: int = 1
    #: s3: seconds to connect to S3, seconds without a byte of its answer, and attempts per call.
    s3_connect_timeout: int = 3
    s3_read_timeout: int = 15
    s3_max_attempts: int = 3
    #: Seconds between sweeps for leftovers (``sweeper.py``); 0: no sweeper.
    sweep_interval: int = 3600
    #: Seconds after which an unfinished multipart upload or temp file is a leftover.
    sweep_age: int = 24 * 3600
    #: filesystem: flush every write to stable storage before answering (``WAS_FSYNC``; off trades
    #: durability for speed: a power cut may lose acknowledged writes).
    fsync: bool = True
    #: Seconds the s3 backend keeps a space record (``WAS_SPACE_CACHE_SECONDS``); 0: no cache.
    space_cache_seconds: int = 0


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}.") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}.")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {env.get(name)!r}.")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be on or off, not {env.get(name)!r}.")


def _public_url(env: Mapping[str, str]) -> str:
    """``WAS_PUBLIC_URL``: an origin only (scheme and host, optional port), no trailing slash."""
    raw = env.get("WAS_PUBLIC_URL", "").strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ConfigError(
            f"WAS_PUBLIC_URL must be an origin such as https://storage.example.com, not {raw!r}."
        )
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _cors_origins(env: Mapping[str, str]) -> tuple[str, ...]:
    """``WAS_CORS_ORIGINS``: ``*`` (default), ``off``, or origins separated by commas or spaces.

    Each origin is kept as browsers send ``Origin``: lower case, without a
    default port, so a configured ``https://Wallet.example:443`` still matches.
    """
    raw = env.get("WAS_CORS_ORIGINS", "").strip()
    if raw in ("", "*"):
        return ("*",)
    if raw.lower() == "off":
        return ()
    origins: list[str] = []
    for item in raw.replace(",", " ").split():
        parts = urlsplit(item)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (
            not item.isascii()
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or port == -1
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
            or item.endswith(("?", "#", ":"))
        ):
            raise ConfigError(
                "WAS_CORS_ORIGINS must be *, off, or origins such as https://wallet.example "
                f"separated by commas or spaces, not {item!r}."
            )
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default = {"http": 80, "https": 443}[parts.scheme]
        origin = f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


def _trusted_proxies(env: Mapping[str, str]) -> tuple[str, ...]:
    """``WAS_TRUSTED_PROXIES``: IPv4 or IPv6 addresses or CIDRs separated by commas or spaces."""
    raw = env.get("WAS_TRUSTED_PROXIES", "")
    networks: list[str] = []
    for item in raw.replace(",", " ").split():
        try:
            network = str(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                "WAS_TRUSTED_PROXIES must be IP addresses or CIDRs such as 10.0.0.0/8 or fd00::/8 "
                f"separated by commas or spaces, not {item!r}."
            ) from None
        if network not in networks:
            networks.append(network)
    return tuple(networks)


#: The most worker processes ``WAS_WORKERS`` / ``--workers`` accepts.
MAX_WORKERS = 64


def cpu_count() -> int:
    """The cores this process may run on (its affinity, which systemd's ``CPUAffinity=`` narrows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def parse_workers(raw: str, name: str = "WAS_WORKERS") -> int:
    """``auto`` (the number of cores) or a whole number from 1 to ``MAX_WORKERS``."""
    value = raw.strip().lower()
    if value == "auto":
        return min(cpu_count(), MAX_WORKERS)
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be auto or a whole number of processes, not {raw!r}.") from None
    if not 1 <= count <= MAX_WORKERS:
        raise ConfigError(f"{name} must be auto or between 1 and {MAX_WORKERS}, not {count}.")
    return count


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate ``WAS_*`` variables (the existing server's names where it has them)."""
    env = os.environ if env is None else env
    backend = _choice(env, "WAS_STORAGE_BACKEND", "filesystem", BACKENDS)
    root_dir = env.get("WAS_STORAGE_ROOT_DIR", "").strip() or "./was_data"
    if backend == "filesystem" and "\0" in root_dir:
        raise ConfigError("WAS_STORAGE_ROOT_DIR must be a directory path.")
    bucket = env.get("WAS_STORAGE_BUCKET", "").strip()
    prefix = env.get("WAS_STORAGE_PREFIX", "")
    if backend == "s3":
        if not bucket:
            raise ConfigError("WAS_STORAGE_BUCKET must name the S3 bucket when WAS_STORAGE_BACKEND=s3.")
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(f"WAS_STORAGE_BUCKET {bucket!r} is not a valid S3 bucket name.")
        if len(prefix.encode()) > 256 or prefix.startswith("/"):
            raise ConfigError("WAS_STORAGE_PREFIX must be at most 256 bytes and not start with '/'.")
    return Settings(
        backend=backend,
        root_dir=root_dir,
        bucket=bucket,
        prefix=prefix,
        profile=_choice(env, "WAS_PROFILE", "spec", PROFILES),
        max_signature_lifetime=_int(env, "WAS_MAX_SIGNATURE_LIFETIME", 3600, 1, 7 * 24 * 3600),
        clock_skew=_int(env, "WAS_CLOCK_SKEW", 300, 0, 3600),
        threads=_int(env, "WAS_THREADS", 16, 1, 256),
        max_backlog=_int(env, "WAS_MAX_BACKLOG", 256, 1, 100_000),
        access_log=_flag(env, "WAS_ACCESS_LOG", True),
        max_upload=_int(env, "WAS_MAX_UPLOAD_BYTES", 1 << 30, 0, 5 * (1 << 40)),
        shutdown_grace=_int(env, "WAS_SHUTDOWN_GRACE", 25, 0, 3600),
        public_url=_public_url(env),
        require_digest=_flag(env, "WAS_REQUIRE_DIGEST", False),
        cors_origins=_cors_origins(env),
        trusted_proxies=_trusted_proxies(env),
        strict_collections=_flag(env, "WAS_STRICT_COLLECTIONS", False),
        workers=parse_workers(env.get("WAS_WORKERS", "").strip() or "1"),
        s3_connect_timeout=_int(env, "WAS_S3_CONNECT_TIMEOUT", 3, 1, 300),
        s3_read_timeout=_int(env, "WAS_S3_READ_TIMEOUT", 15, 1, 3600),
        s3_max_attempts=_int(env, "WAS_S3_MAX_ATTEMPTS", 3, 1, 10),
        sweep_interval=_int(env, "WAS_SWEEP_INTERVAL", 3600, 0, 7 * 24 * 3600),
        sweep_age=_int(env, "WAS_SWEEP_AGE", 24 * 3600, 1, 30 * 24 * 3600),
        fsync=_flag(env, "WAS_FSYNC", True),
        space_cache_seconds=_int(env, "WAS_SPACE_CACHE_SECONDS", 0, 0, MAX_SPACE_CACHE_SECONDS),
    )
