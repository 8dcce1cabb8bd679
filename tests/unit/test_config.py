"""Settings for sharing: WAS_PUBLIC_URL is an origin, WAS_REQUIRE_DIGEST a flag."""

from __future__ import annotations

import pytest

from was_twisted.config import ConfigError, settings_from_env


def test_public_url_is_normalized_to_an_origin() -> None:
    assert settings_from_env({}).public_url == ""
    assert settings_from_env({"WAS_PUBLIC_URL": "https://Storage.Example.com/"}).public_url == (
        "https://storage.example.com"
    )
    assert (
        settings_from_env({"WAS_PUBLIC_URL": "http://127.0.0.1:8080"}).public_url == "http://127.0.0.1:8080"
    )


@pytest.mark.parametrize(
    "value",
    [
        "storage.example.com",
        "ftp://x.example",
        "https://x.example/prefix",
        "https://x.example?a",
        "https://u@x.example",
    ],
)
def test_public_url_refuses_what_is_not_an_origin(value: str) -> None:
    with pytest.raises(ConfigError, match="WAS_PUBLIC_URL"):
        settings_from_env({"WAS_PUBLIC_URL": value})


def test_require_digest_flag() -> None:
    assert settings_from_env({}).require_digest is False
    assert settings_from_env({"WAS_REQUIRE_DIGEST": "on"}).require_digest is True
    with pytest.raises(ConfigError, match="WAS_REQUIRE_DIGEST"):
        settings_from_env({"WAS_REQUIRE_DIGEST": "sometimes"})


def test_strict_collections_flag() -> None:
    assert settings_from_env({}).strict_collections is False
    assert settings_from_env({"WAS_STRICT_COLLECTIONS": "on"}).strict_collections is True
    assert settings_from_env({"WAS_STRICT_COLLECTIONS": "off"}).strict_collections is False
    with pytest.raises(ConfigError, match="WAS_STRICT_COLLECTIONS"):
        settings_from_env({"WAS_STRICT_COLLECTIONS": "sometimes"})
