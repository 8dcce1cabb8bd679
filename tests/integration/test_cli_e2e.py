"""``was-admin`` against the real ``twistd -n was``: every client command, its errors and exit codes.

What the CLI makes is also checked by Digital Bazaar's libraries: its key
file imports into ``@digitalbazaar/ed25519-verification-key-2020`` and its
delegations verify with ``@digitalbazaar/zcap``'s ``CapabilityDelegation``.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from was_twisted.auth.didkey import public_key_for

from .jsdriver import JS_DIR, node_with
from .processes import REPO, WasProcess

CLI_TIMEOUT = 60


def admin(*args: str, stdin: bytes = b"", cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """``python -m was_twisted.admin ARGS`` (what the ``was-admin`` console script runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WAS_"))}
    return subprocess.run(
        [sys.executable, "-m", "was_twisted.admin", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        timeout=CLI_TIMEOUT,
    )


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, (result.returncode, result.stderr.decode())
    return result.stdout.decode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WasProcess]:
    env = {"WAS_STORAGE_BACKEND": "filesystem", "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data")}
    with WasProcess(env, tmp_path / "twistd.log") as was:
        yield was


def test_every_client_command_against_the_real_server(server: WasProcess, tmp_path: Path) -> None:
    alice_did = ok(admin("keygen", "alice.json", cwd=tmp_path)).strip()
    bob_did = ok(admin("keygen", "bob.json", cwd=tmp_path)).strip()
    assert alice_did.startswith("did:key:z6Mk") and bob_did != alice_did
    assert stat.S_IMODE(os.stat(tmp_path / "alice.json").st_mode) == 0o600
    again = admin("keygen", "alice.json", cwd=tmp_path)
    assert again.returncode == 2 and b"refusing to overwrite" in again.stderr

    space = ok(
        admin("provision", server.url, "--key", "alice.json", "--id", "cli-space", cwd=tmp_path)
    ).strip()
    assert space == f"{server.url}/space/cli-space"

    (tmp_path / "note.txt").write_bytes("héllo, wallet\n".encode())
    ok(
        admin(
            "put",
            f"{space}/docs/note.txt",
            "note.txt",
            "--key",
            "alice.json",
            "--type",
            "text/plain",
            cwd=tmp_path,
        )
    )
    ok(
        admin(
            "put", f"{space}/docs/raw.bin", "-", "--key", "alice.json", stdin=bytes(range(256)), cwd=tmp_path
        )
    )
    assert (
        ok(admin("get", f"{space}/docs/note.txt", "--key", "alice.json", cwd=tmp_path)) == "héllo, wallet\n"
    )
    ok(admin("get", f"{space}/docs/raw.bin", "--key", "alice.json", "-o", "raw.out", cwd=tmp_path))
    assert (tmp_path / "raw.out").read_bytes() == bytes(range(256))
    listing = ok(admin("ls", f"{space}/docs/", "--key", "alice.json", cwd=tmp_path)).splitlines()
    assert listing == ["note.txt\t15\ttext/plain", "raw.bin\t256\tapplication/octet-stream"]

    # Bob may not read, until Alice delegates a read of /docs/ to him (and only a read).
    refused = admin("get", f"{space}/docs/note.txt", "--key", "bob.json", cwd=tmp_path)
    assert refused.returncode == 1 and b"not-found" in refused.stderr
    ok(
        admin(
            "share",
            f"{space}/docs/",
            "--key",
            "alice.json",
            "--to",
            bob_did,
            "-o",
            "bob-cap.json",
            cwd=tmp_path,
        )
    )
    read = admin(
        "get", f"{space}/docs/note.txt", "--key", "bob.json", "--capability", "bob-cap.json", cwd=tmp_path
    )
    assert ok(read) == "héllo, wallet\n"
    write = admin(
        "put",
        f"{space}/docs/note.txt",
        "raw.out",
        "--key",
        "bob.json",
        "--capability",
        "bob-cap.json",
        cwd=tmp_path,
    )
    assert write.returncode == 1
    outside = admin(
        "get", f"{space}/other", "--key", "bob.json", "--capability", "bob-cap.json", cwd=tmp_path
    )
    assert outside.returncode == 1

    # Public: an unsigned read works once Alice makes the resource public.
    assert admin("get", f"{space}/docs/note.txt", cwd=tmp_path).returncode == 1
    ok(admin("share", f"{space}/docs/note.txt", "--key", "alice.json", "--public", cwd=tmp_path))
    assert ok(admin("get", f"{space}/docs/note.txt", cwd=tmp_path)) == "héllo, wallet\n"

    ok(admin("rm", f"{space}/docs/raw.bin", "--key", "alice.json", cwd=tmp_path))
    assert admin("get", f"{space}/docs/raw.bin", "--key", "alice.json", cwd=tmp_path).returncode == 1
    ok(admin("rm", space, "--key", "alice.json", cwd=tmp_path))
    assert admin("get", f"{space}/docs/note.txt", "--key", "alice.json", cwd=tmp_path).returncode == 1


def test_check_passes_on_a_working_deployment(server: WasProcess, tmp_path: Path) -> None:
    out = ok(admin("check", server.url, cwd=tmp_path))
    for step in (
        "health",
        "ready",
        "provision",
        "write",
        "read",
        "delete resource",
        "delete space",
        "CORS preflight",
    ):
        assert f"ok   {step}\n" in out
    assert "passed every check" in out


def test_errors_and_exit_codes(server: WasProcess, tmp_path: Path) -> None:
    missing_key = admin("put", f"{server.url}/space/x/a", "-", cwd=tmp_path)
    assert missing_key.returncode == 2 and b"--key KEYFILE is required" in missing_key.stderr
    no_file = admin("get", f"{server.url}/space/x/a", "--key", "none.json", cwd=tmp_path)
    assert no_file.returncode == 2 and b"does not exist" in no_file.stderr
    ok(admin("keygen", "k.json", cwd=tmp_path))
    not_a_space = admin("get", f"{server.url}/health", "--key", "k.json", cwd=tmp_path)
    assert not_a_space.returncode == 2 and b"not inside a space" in not_a_space.stderr
    unreachable = admin("check", "http://127.0.0.1:9", cwd=tmp_path)
    assert unreachable.returncode == 3 and b"cannot reach" in unreachable.stderr
    no_target = admin("share", f"{server.url}/space/x/a", "--key", "k.json", cwd=tmp_path)
    assert no_target.returncode == 2 and b"--to DID" in no_target.stderr
    usage = admin("frobnicate", cwd=tmp_path)
    assert usage.returncode == 2


def test_digital_bazaar_reads_the_key_file_and_verifies_the_delegation(tmp_path: Path) -> None:
    node = node_with("@digitalbazaar/zcap", "@digitalbazaar/ed25519-verification-key-2020")
    alice_did = ok(admin("keygen", "alice.json", cwd=tmp_path)).strip()
    bob_did = ok(admin("keygen", "bob.json", cwd=tmp_path)).strip()
    # zcap@9 attenuates a target only to ones below it after a "/" (not below a trailing one).
    target = "https://was.example/space/s1/docs"
    first = json.loads(ok(admin("share", target, "--key", "alice.json", "--to", bob_did, cwd=tmp_path)))
    (tmp_path / "first.json").write_text(json.dumps(first))
    second = json.loads(
        ok(
            admin(
                "share",
                target + "/a.txt",
                "--key",
                "bob.json",
                "--capability",
                "first.json",
                "--to",
                alice_did,
                cwd=tmp_path,
            )
        )
    )

    def verdict(capability: dict[str, object], key_file: str) -> dict[str, object]:
        payload = {
            "keyFile": json.loads((tmp_path / key_file).read_text()),
            "capability": capability,
            "rootController": alice_did,
            "message": "signed by was-admin's key, in JavaScript",
        }
        run = subprocess.run(
            [node, str(JS_DIR / "verify_cli_delegation.mjs")],
            input=json.dumps(payload).encode(),
            capture_output=True,
            cwd=JS_DIR,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr.decode()
        result: dict[str, object] = json.loads(run.stdout)
        return result

    one = verdict(first, "alice.json")
    assert one["verified"] is True, one["error"]
    assert one["keyDid"] == alice_did and "keyError" not in one
    signature = base64.urlsafe_b64decode(str(one["signature"]) + "==")
    key: Ed25519PublicKey = public_key_for(alice_did)
    key.verify(signature, b"signed by was-admin's key, in JavaScript")
    two = verdict(second, "bob.json")
    assert two["verified"] is True, two["error"]
    tampered = json.loads(json.dumps(first))
    tampered["allowedAction"] = ["GET", "PUT"]
    assert verdict(tampered, "alice.json")["verified"] is False
