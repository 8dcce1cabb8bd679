"""``--workers`` / ``WAS_WORKERS``: parsing, and what several processes cannot share."""

from __future__ import annotations

import pytest

from was_twisted import config
from was_twisted.config import ConfigError, Settings, parse_workers, settings_from_env
from was_twisted.tap import Options
from was_twisted.workers import check_workers, worker_metrics_endpoint

S3 = {"WAS_STORAGE_BACKEND": "s3", "WAS_STORAGE_BUCKET": "bucket"}


def test_default_is_one_process() -> None:
    assert settings_from_env(S3).workers == 1
    assert settings_from_env({**S3, "WAS_WORKERS": " "}).workers == 1


def test_a_number_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from_env({**S3, "WAS_WORKERS": " 4 "}).workers == 4
    monkeypatch.setattr(config, "cpu_count", lambda: 6)
    assert settings_from_env({**S3, "WAS_WORKERS": "AUTO"}).workers == 6
    assert parse_workers("auto") == 6
    monkeypatch.setattr(config, "cpu_count", lambda: 500)
    assert parse_workers("auto") == config.MAX_WORKERS


def test_cpu_count_is_at_least_one() -> None:
    assert config.cpu_count() >= 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", "WAS_WORKERS must be auto or between 1 and 64, not 0."),
        ("-2", "WAS_WORKERS must be auto or between 1 and 64, not -2."),
        ("65", "WAS_WORKERS must be auto or between 1 and 64, not 65."),
        ("two", "WAS_WORKERS must be auto or a whole number of processes, not 'two'."),
        ("1.5", "WAS_WORKERS must be auto or a whole number of processes, not '1.5'."),
    ],
)
def test_bad_values_are_one_sentence(raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        settings_from_env({**S3, "WAS_WORKERS": raw})
    assert str(exc.value) == message


def _options(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> Options:
    for key in ("WAS_WORKERS", "WAS_STORAGE_BACKEND", "WAS_STORAGE_BUCKET"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_option_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _options(monkeypatch, S3)["workers"] == 1
    assert _options(monkeypatch, {**S3, "WAS_WORKERS": "3"})["workers"] == 3
    assert _options(monkeypatch, {**S3, "WAS_WORKERS": "3"}, "--workers", "2")["workers"] == 2
    monkeypatch.setattr(config, "cpu_count", lambda: 2)
    assert _options(monkeypatch, S3, "--workers=auto")["workers"] == 2


def test_bad_option_stops_with_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exc:
        _options(monkeypatch, S3, "--workers", "many")
    assert str(exc.value) == "was: --workers must be auto or a whole number of processes, not 'many'."


@pytest.mark.parametrize("backend", ["filesystem", "memory"])
def test_state_in_one_process_is_refused(backend: str) -> None:
    with pytest.raises(ConfigError) as exc:
        check_workers(Settings(backend=backend), 2, ["tcp:8080"])
    assert str(exc.value) == (
        f"--workers 2 needs WAS_STORAGE_BACKEND=s3: the {backend} backend keeps its state in one "
        "process, so it runs with one worker only."
    )
    check_workers(Settings(backend=backend), 1, ["tcp:8080"])  # one worker: today's server


@pytest.mark.parametrize("endpoint", ["unix:/run/was.sock", "ssl:8443", "reuseport:8080"])
def test_listeners_that_cannot_be_shared_are_refused(endpoint: str) -> None:
    with pytest.raises(ConfigError) as exc:
        check_workers(Settings(backend="s3", bucket="bucket"), 2, ["tcp:8080", endpoint])
    assert str(exc.value) == (
        f"--listen {endpoint} cannot be shared by worker processes; with --workers use tcp:, tcp6: "
        "or systemd: endpoints."
    )


def test_shareable_listeners_pass() -> None:
    check_workers(
        Settings(backend="s3", bucket="bucket"), 2, ["tcp:8080", "tcp6:8081", "systemd:domain=INET:index=0"]
    )


@pytest.mark.parametrize(
    ("endpoint", "index", "expected"),
    [
        ("tcp:9108:interface=127.0.0.1", 0, "tcp:9108:interface=127.0.0.1"),
        ("tcp:9108:interface=127.0.0.1", 3, "tcp:9111:interface=127.0.0.1"),
        ("tcp:interface=127.0.0.1:port=9108", 1, "tcp:interface=127.0.0.1:port=9109"),
        ("tcp6:9108:interface=\\:\\:1", 2, "tcp6:9110:interface=\\:\\:1"),
        ("tcp:0:interface=127.0.0.1", 5, "tcp:0:interface=127.0.0.1"),
    ],
)
def test_each_worker_serves_metrics_on_port_plus_index(endpoint: str, index: int, expected: str) -> None:
    assert worker_metrics_endpoint(endpoint, index) == expected


@pytest.mark.parametrize(
    ("endpoint", "index"), [("unix:/run/m.sock", 0), ("tcp:65535", 1), ("tcp:interface=127.0.0.1", 0)]
)
def test_metrics_that_cannot_be_split_are_refused(endpoint: str, index: int) -> None:
    with pytest.raises(ConfigError, match=r"^--metrics "):
        worker_metrics_endpoint(endpoint, index)
