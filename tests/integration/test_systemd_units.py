"""``systemd-analyze`` on the shipped units: they load cleanly and the service's exposure stays <= 1.5.

``verify`` refuses an ``ExecStart`` binary that does not exist, so the units
are checked as copies with ``/opt/was/bin/twistd`` replaced by this venv's
``twistd`` (everything else byte for byte).  CI installs systemd
(``.ci/run``); elsewhere a missing ``systemd-analyze`` skips these tests.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .processes import REPO, TWISTD, which_or_skip

pytestmark = pytest.mark.integration

UNITS = REPO / "systemd"
DROP_IN = Path("was.service.d") / "socket-activation.conf"
#: ``systemd-analyze security`` scores 0.0 (locked down) to 10.0; ours must not get worse than this.
MAX_EXPOSURE = 1.5
_OVERALL = re.compile(r"Overall exposure level for was\.service: (\d+\.\d)")


def analyze() -> str:
    return which_or_skip("systemd-analyze", "apt-get install systemd")


def copy_units(dest: Path, socket_activated: bool) -> Path:
    """The units under ``dest``, ``ExecStart`` pointing at a real twistd; the drop-in only if asked."""
    names = ["was.service"] + (["was.socket", str(DROP_IN)] if socket_activated else [])
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (UNITS / name).read_text()
        if name != "was.socket":
            assert "/opt/was/bin/twistd" in text, name
        target.write_text(text.replace("/opt/was/bin/twistd", TWISTD))
    return dest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([analyze(), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("socket_activated", [False, True], ids=["plain", "socket-activated"])
def test_units_verify_without_a_warning(tmp_path: Path, socket_activated: bool) -> None:
    units = copy_units(tmp_path, socket_activated)
    files = [str(units / "was.service")] + ([str(units / "was.socket")] if socket_activated else [])
    result = run("verify", "--man=no", *files)
    # verify only warns (exit 0) about unknown keys, in the drop-in too: any output is a mistake.
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result


def test_socket_activation_pieces_fit_together() -> None:
    socket_unit = (UNITS / "was.socket").read_text()
    drop_in = (UNITS / DROP_IN).read_text()
    assert re.search(r"^ListenStream=8080$", socket_unit, re.M)
    assert re.search(r"^Service=was\.service$", socket_unit, re.M)
    # A dual-stack ListenStream=8080 socket is AF_INET6: the adopted endpoint must say so.
    exec_starts = re.findall(r"^ExecStart=(.*)$", drop_in, re.M)
    assert exec_starts[0] == "" and exec_starts[1].endswith("--listen systemd:domain=INET6:index=0")
    service = (UNITS / "was.service").read_text()
    assert re.search(r"^Type=notify$", service, re.M) and re.search(r"^NotifyAccess=main$", service, re.M)


@pytest.mark.parametrize("socket_activated", [False, True], ids=["plain", "socket-activated"])
def test_security_exposure_is_at_most_1_5(tmp_path: Path, socket_activated: bool) -> None:
    units = copy_units(tmp_path, socket_activated)
    # --threshold counts tenths: exit non-zero when the exposure is over 1.5.
    result = run("security", "--offline=true", "--threshold=15", str(units / "was.service"))
    match = _OVERALL.search(result.stdout)
    assert match, result
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result
