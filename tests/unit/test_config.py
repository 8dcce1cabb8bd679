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


def test_s3_timeouts_default_and_bound() -> None:
    """WAS_S3_*: the defaults, and the bound on one call that the README's Failure behaviour states."""
    from was_twisted.storage.s3 import S3Timeouts

    s = settings_from_env({})
    assert (s.s3_connect_timeout, s.s3_read_timeout, s.s3_max_attempts) == (3, 15, 3)
    assert S3Timeouts(s.s3_connect_timeout, s.s3_read_timeout, s.s3_max_attempts).bound() == 57
    s = settings_from_env(
        {"WAS_S3_CONNECT_TIMEOUT": "1", "WAS_S3_READ_TIMEOUT": "2", "WAS_S3_MAX_ATTEMPTS": "1"}
    )
    assert S3Timeouts(s.s3_connect_timeout, s.s3_read_timeout, s.s3_max_attempts).bound() == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WAS_S3_CONNECT_TIMEOUT", "0"),
        ("WAS_S3_READ_TIMEOUT", "soon"),
        ("WAS_S3_MAX_ATTEMPTS", "11"),
    ],
)
def test_s3_timeouts_refuse_bad_values(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        settings_from_env({name: value})


def test_s3_timeouts_reach_the_client(mocked_aws: None) -> None:
    from was_twisted.storage.s3 import S3Backend, S3Timeouts

    b = S3Backend("any", "", threads=2, timeouts=S3Timeouts(2, 7, 5))
    config = b.client.meta.config
    assert (config.connect_timeout, config.read_timeout, config.retries["total_max_attempts"]) == (2, 7, 5)
    b.close()
