"""``twistd was``: options and ``makeService``."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python import usage

from .config import ConfigError, settings_from_env

DEFAULT_ENDPOINT = "tcp:8080"


class Options(usage.Options):
    """Command-line options; storage and the rest come from ``WAS_*`` environment variables."""

    synopsis = "[--listen ENDPOINT ...] [--metrics ENDPOINT]"
    optParameters = [
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this Twisted endpoint, e.g. "
            "tcp:9108:interface=127.0.0.1 (off by default).",
        ],
    ]
    longdesc = (
        "Serve Wallet Attached Storage. Storage is chosen by WAS_STORAGE_BACKEND "
        "(filesystem, the default, under WAS_STORAGE_ROOT_DIR; or memory); "
        "WAS_PROFILE is spec (default) or legacy."
    )

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """A Twisted endpoint to listen on, e.g. tcp:8080 or systemd:domain=INET:index=0 (repeatable;
        default tcp:8080)."""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [DEFAULT_ENDPOINT]
        try:
            self["settings"] = settings_from_env()
        except ConfigError as exc:
            raise SystemExit(f"was: {exc}") from None


def makeService(options: Options) -> IService:
    """Build the service tree; an unusable setting stops start-up with one sentence."""
    from twisted.internet import reactor

    from .service import build_service

    try:
        return build_service(
            options["settings"], reactor, options["listen"], metrics_endpoint=options["metrics"]
        )
    except ConfigError as exc:
        raise SystemExit(f"was: {exc}") from None


__all__ = ["Options", "makeService"]
