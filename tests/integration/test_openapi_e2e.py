"""schemathesis over ``/openapi.json`` against the real ``twistd -n was``: no 5xx, answers as documented.

Bounded: a few examples per operation and an overall time budget.  Every
other case into a space is aimed at one provisioned space and signed by its
controller (as the Python client signs), so 2xx paths are exercised too, not
only the 404s and 401s an unsigned stranger gets.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from .processes import WasProcess

pytestmark = pytest.mark.integration

EXAMPLES = 8
BUDGET = 60.0  # seconds for the whole walk, whatever the machine's load
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(params=["memory", "filesystem"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WasProcess]:
    env = {"WAS_STORAGE_BACKEND": request.param, "WAS_MAX_UPLOAD_BYTES": "4096"}
    if request.param == "filesystem":
        env["WAS_STORAGE_ROOT_DIR"] = str(tmp_path / "data")
    with WasProcess(env, tmp_path / "twistd.log") as proc:
        yield proc


def provision(url: str, signer: Ed25519Signer) -> str:
    space = str(uuid.uuid4())
    path = f"/space/{space}"
    auth = create_authorization_header(signer=signer, method="PUT", url=path)
    r = httpx.put(
        url + path, content=json.dumps({"controller": signer.controller}), headers={"authorization": auth}
    )
    assert r.status_code == 201, r.text
    for item in ("c1/r1.txt", "greeting.txt"):
        p = f"{path}/{item}"
        auth = create_authorization_header(signer=signer, method="PUT", url=p)
        r = httpx.put(
            url + p, content=b"hello", headers={"authorization": auth, "content-type": "text/plain"}
        )
        assert r.status_code == 204, r.text
    return space


def test_schemathesis_finds_no_server_error(server: WasProcess) -> None:
    url = server.url
    assert httpx.get(url + "/openapi.json").headers["content-type"] == "application/json"
    signer = Ed25519Signer()
    space = provision(url, signer)
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    session = requests.Session()
    failures: list[str] = []
    counts: dict[int, int] = {}
    signed: set[int] = set()
    deadline = time.monotonic() + BUDGET
    turn = [0]

    def run(case: Any) -> None:
        turn[0] += 1
        headers: dict[str, str] = {}
        # Not the space itself: a PUT would hand it to a generated controller, a DELETE end it.
        keep = case.operation.path == "/space/{space}" and case.method in ("PUT", "DELETE")
        if "space" in (case.path_parameters or {}) and turn[0] % 2 and not keep:
            case.path_parameters["space"] = space
            path = case.formatted_path
            headers["authorization"] = create_authorization_header(
                signer=signer, method=case.method, url=path
            )
        response = case.call(base_url=url, session=session, headers=headers, timeout=10)
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        if headers:
            signed.add(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except (
            Exception,
            BaseExceptionGroup,
        ) as error:  # collected, not raised: no shrinking, the budget holds
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {error}"[:2000])

    bounded = settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    operations = 0
    for result in schema.get_all_operations():
        if time.monotonic() > deadline:
            break
        operation = result.ok()
        operations += 1
        bounded(given(case=operation.as_strategy())(lambda case: run(case)))()
    print(f"{operations} operations, statuses {sorted(counts.items())}, {len(failures)} failures")
    assert operations == sum(1 for _ in schema.get_all_operations()), "the time budget ran out"
    assert not failures, "\n\n".join(failures[:10])
    assert not any(code >= 500 for code in counts)
    assert {200, 201, 204} <= signed, signed  # signed cases read and wrote the provisioned space


def test_oversized_body_is_the_documented_413(server: WasProcess) -> None:
    """413 (``WAS_MAX_UPLOAD_BYTES``) is a documented answer of resource writes, as problem+json."""
    signer = Ed25519Signer()
    space = provision(server.url, signer)
    path = f"/space/{space}/c1/big.bin"
    doc = httpx.get(server.url + "/openapi.json").json()
    assert "413" in doc["paths"]["/space/{space}/{collection}/{resource}"]["put"]["responses"]
    auth = create_authorization_header(signer=signer, method="PUT", url=path)
    r = httpx.put(server.url + path, content=b"x" * 5000, headers={"authorization": auth})
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
