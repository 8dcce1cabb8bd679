"""Start and stop real S3 servers on 127.0.0.1 for integration tests.

Two servers:

* ``start_moto``: moto's stand-alone server (``python -m moto.server``); accepts any key.
* ``start_ceph``: a throwaway single-node Ceph cluster (one monitor, one OSD on
  ``memstore`` so the data lives in RAM, one RADOS Gateway), a production S3
  implementation that checks signatures.  Config, keyrings, logs and the
  monitor's small store live in ``workdir``; nothing touches /etc/ceph or
  /var/lib/ceph.  Install it with ``.ci/install-s3-servers``.

Every process is stopped by ``S3Server.stop()`` (SIGTERM, wait, SIGKILL after a
bound), by an ``atexit`` handler as a safety net, and, on Linux, by the kernel
(SIGKILL) if the Python process that started it dies, even by SIGKILL
(``PR_SET_PDEATHSIG``; only for servers started from the main thread, because
Linux ties that signal to the thread that forked).

Talk to these endpoints with path-style addressing; ``S3Server.env()`` holds
what a child process using boto3 needs (it reads ``AWS_ENDPOINT_URL_S3``).
"""

from __future__ import annotations

import atexit
import ctypes
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:  # the stubs are optional
    S3Client = Any

HOST = "127.0.0.1"
CEPH_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool", "ceph-authtool")
# Pools radosgw would otherwise create one by one on first use (slow).
RGW_POOLS = (
    ".rgw.root",
    "default.rgw.log",
    "default.rgw.control",
    "default.rgw.meta",
    "default.rgw.buckets.index",
    "default.rgw.buckets.data",
    "default.rgw.buckets.non-ec",
)
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
LOG_TAIL_LINES = 40

# Every server not stopped yet, and every process not reaped yet (for the atexit net).
_LIVE_SERVERS: list[S3Server] = []
_LIVE: list[subprocess.Popen[bytes]] = []
_LIVE_LOCK = threading.Lock()


# --------------------------------------------------------------------------- processes


def _death_signal_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when this process dies.

    Linux sends the signal when the *thread* that forked exits, so this is only
    used from the main thread (a server started from a worker thread would die
    with that thread).
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ minus Python path variables (the Ceph CLI is a system-Python script)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(extra or {})
    return env


def _spawn(
    argv: Sequence[str], out_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-running process, stdout and stderr appended to ``out_path``."""
    with open(out_path, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else _clean_env(),
            cwd=str(cwd) if cwd else None,
            start_new_session=True,  # a Ctrl-C in the terminal goes to pytest only; we stop them
            preexec_fn=_death_signal_preexec(),
        )
    with _LIVE_LOCK:
        _LIVE.append(proc)
    return proc


def _terminate(procs: Sequence[subprocess.Popen[bytes]], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM all of ``procs`` at once, wait up to ``timeout``, then SIGKILL the rest."""
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                pass
    with _LIVE_LOCK:
        for proc in procs:
            if proc.returncode is not None and proc in _LIVE:
                _LIVE.remove(proc)


@atexit.register
def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE_SERVERS)
    for server in servers:
        server.stop(timeout=5.0)
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in reversed(procs):  # e.g. radosgw before the OSD before the monitor
        _terminate([proc], timeout=5.0)


def _free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (someone may take it; callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all sockets are held open until all are picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _http_answers(port: int, timeout: float = 1.0) -> bool:
    """True once something on ``port`` answers an HTTP ``GET /`` (any status)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(cannot read: {e})"
    return "\n".join(text.splitlines()[-lines:])


def _logs_tail(paths: Sequence[Path]) -> str:
    return "\n".join(f"--- {p} (last {LOG_TAIL_LINES} lines) ---\n{_tail(p)}" for p in paths if p.exists())


# --------------------------------------------------------------------------- S3Server


@dataclass
class S3Server:
    """A running S3 server and the credentials it accepts."""

    name: str  # "moto" or "ceph"
    endpoint_url: str  # e.g. "http://127.0.0.1:PORT"
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    workdir: Path | None = None
    startup_seconds: float = 0.0
    # Processes in start order; stopped one by one in reverse order.
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    _cleanups: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def env(self) -> dict[str, str]:
        """Environment for a process whose boto3 should use this server (path-style is up to it)."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def process_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default os.environ) without any ``AWS_*`` variable, plus ``env()``.

        Drops a developer's AWS_PROFILE / AWS_SESSION_TOKEN etc., which would
        otherwise be sent along with this server's keys.
        """
        base = os.environ if base is None else base
        return {**{k: v for k, v in base.items() if not k.startswith("AWS_")}, **self.env()}

    def client(self, secret_key: str | None = None, **config: Any) -> S3Client:
        """A boto3 S3 client for this server, path-style (``secret_key`` overrides, e.g. a wrong one)."""
        import boto3
        from botocore.config import Config

        cfg = Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 2, "mode": "standard"},
            **config,
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key if secret_key is None else secret_key,
            region_name=self.region,
            config=cfg,
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create bucket ``name`` (a fresh unique name if None) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:20]}"
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.client().create_bucket(**kwargs)
        return name

    def __post_init__(self) -> None:
        with _LIVE_LOCK:
            _LIVE_SERVERS.append(self)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every process of this server, last started first (idempotent).

        Each gets SIGTERM, then SIGKILL if still running after ``timeout`` seconds.
        """
        with _LIVE_LOCK:
            _LIVE_SERVERS[:] = [s for s in _LIVE_SERVERS if s is not self]
        procs, self._procs = self._procs, []
        for proc in reversed(procs):
            _terminate([proc], timeout)
        cleanups, self._cleanups = self._cleanups, []
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception:  # best effort
                pass

    @property
    def running(self) -> bool:
        return any(p.poll() is None for p in self._procs)


# --------------------------------------------------------------------------- moto


def start_moto(workdir: Path, timeout: float = 30) -> S3Server:
    """``python -m moto.server`` on a free port of 127.0.0.1, answering HTTP; logs in workdir/moto.log."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "moto.log"
    started = time.monotonic()
    deadline = started + timeout
    attempts = 0
    while True:
        attempts += 1
        port = _free_port()
        proc = _spawn(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            log,
            env=_clean_env({"PYTHONUNBUFFERED": "1"}),
            cwd=workdir,
        )
        while time.monotonic() < deadline and proc.poll() is None:
            if _http_answers(port, timeout=0.5):
                return S3Server(
                    "moto",
                    f"http://{HOST}:{port}",
                    "testing",
                    "testing",
                    workdir=workdir,
                    startup_seconds=time.monotonic() - started,
                    _procs=[proc],
                )
            time.sleep(0.05)
        died = proc.poll() is not None
        _terminate([proc])
        # It died early (most likely someone took the port): try another port.
        if died and attempts < 3 and time.monotonic() < deadline:
            continue
        why = f"exited with {proc.returncode}" if died else f"did not answer within {timeout}s"
        raise RuntimeError(f"moto server on port {port} {why}\n{_logs_tail([log])}")


# --------------------------------------------------------------------------- Ceph


def ceph_available() -> bool:
    """Whether the Ceph binaries start_ceph needs are on PATH."""
    return all(shutil.which(b) for b in CEPH_BINARIES)


class _Ceph:
    """Builds and starts one throwaway cluster; ``server`` owns the processes."""

    def __init__(self, workdir: Path, timeout: float) -> None:
        self.dir = Path(workdir).resolve()
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.timeout = timeout
        self.conf = self.dir / "ceph.conf"
        self.logdir = self.dir / "log"
        self.outs: list[Path] = []  # logs to show when start-up fails
        self.server = S3Server("ceph", "", "", "", workdir=self.dir)
        self.env = _clean_env()

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"Ceph did not start within {self.timeout}s")
        return left

    def run(self, *argv: str, stdin: str | None = None) -> str:
        """Run a short command to completion; its output also goes to log/commands.log."""
        try:
            res = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                env=self.env,
                cwd=self.dir,
                timeout=self.remaining(),
                preexec_fn=_death_signal_preexec(),
            )
        except subprocess.TimeoutExpired as e:
            raise TimeoutError(f"{' '.join(argv)} did not finish within {e.timeout:.1f}s") from e
        with open(self.logdir / "commands.log", "a") as log:
            log.write(f"$ {' '.join(argv)}\n{stdin or ''}{res.stdout}{res.stderr}[exit {res.returncode}]\n")
        if res.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed with exit code {res.returncode}:\n{res.stdout}\n{res.stderr}"
            )
        return res.stdout

    def ceph(self, *args: str, stdin: str | None = None) -> str:
        connect = max(1, int(self.remaining()))
        return self.run("ceph", "-c", str(self.conf), "--connect-timeout", str(connect), *args, stdin=stdin)

    def daemon(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        out = self.logdir / f"{name}.out"
        self.outs += [out, self.logdir / f"{name}.log"]
        return _spawn(argv, out, env=self.env, cwd=self.dir)

    def keyring(self, path: str, entity: str, **caps: str) -> None:
        """A new keyring at ``path`` with a fresh key for ``entity`` and these caps."""
        cap_args = [arg for kind, cap in caps.items() for arg in ("--cap", kind, cap)]
        self.run("ceph-authtool", "--create-keyring", path, "--gen-key", "-n", entity, *cap_args)

    def short_run_dir(self) -> Path:
        """Admin sockets are Unix sockets (path <= 107 bytes): use /tmp if workdir is deep."""
        run = self.dir / "run"
        if len(str(run)) <= 70:
            run.mkdir()
            return run
        short = Path(tempfile.mkdtemp(prefix="ceph-run-"))
        self.server._cleanups.append(lambda: shutil.rmtree(short, ignore_errors=True))
        return short

    def write_conf(self, fsid: str, mon_v2: int, mon_v1: int, rgw_port: int, run_dir: Path) -> None:
        d = self.dir
        self.conf.write_text(
            f"""\
[global]
fsid = {fsid}
mon host = [v2:{HOST}:{mon_v2},v1:{HOST}:{mon_v1}]
mon initial members = a
public addr = {HOST}
cluster addr = {HOST}
ms bind ipv4 = true
ms bind ipv6 = false
run dir = {run_dir}
pid file = $run_dir/$name.pid
admin socket = $run_dir/$name.asok
log file = {self.logdir}/$name.log
log to stderr = false
err to stderr = true
mon cluster log file = {self.logdir}/cluster.log
keyring = {d}/$name.keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
client mount timeout = {max(5, int(self.timeout))}
rados mon op timeout = {max(5, int(self.timeout))}

[mon]
mon data = {d}/mon
keyring = {d}/mon/keyring
paxos propose interval = 0.05
paxos min wait = 0.01

[osd]
osd data = {d}/osd
keyring = {d}/osd/keyring
osd objectstore = memstore
memstore device bytes = {1 << 30}
osd max object name len = 460
osd max object namespace len = 64

[client]
admin socket =

[client.rgw.a]
admin socket = $run_dir/$name.asok
rgw data = {d}/rgw
rgw frontends = beast endpoint={HOST}:{rgw_port} tcp_nodelay=1
rgw init timeout = {max(10, int(self.timeout))}
rgw enable gc threads = false
rgw enable lc threads = false
rgw enable quota threads = false
rgw dynamic resharding = false
"""
        )

    def start(self) -> S3Server:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        for sub in ("log", "mon", "osd", "rgw"):
            (d / sub).mkdir()
        fsid, osd_uuid = str(uuid.uuid4()), str(uuid.uuid4())
        mon_v2, mon_v1, rgw_port = _free_ports(3)
        self.write_conf(fsid, mon_v2, mon_v1, rgw_port, self.short_run_dir())
        conf = str(self.conf)

        # Keys.  The monitor's initial keyring holds every key the cluster starts with.
        mon_kr = str(d / "mon.keyring")
        admin_kr = str(d / "client.admin.keyring")
        rgw_kr = str(d / "client.rgw.a.keyring")
        self.keyring(mon_kr, "mon.", mon="allow *")
        self.keyring(admin_kr, "client.admin", mon="allow *", osd="allow *", mgr="allow *")
        self.keyring(rgw_kr, "client.rgw.a", mon="allow rw", osd="allow rwx")
        for kr in (admin_kr, rgw_kr):
            self.run("ceph-authtool", mon_kr, "--import-keyring", kr)
        # The OSD's key reaches the monitor with `ceph osd new` (below), as the brief's recipe does.
        osd_key = self.run("ceph-authtool", "--gen-print-key").strip()
        (d / "osd-secret.json").write_text(json.dumps({"cephx_secret": osd_key}))
        osd_kr = str(d / "osd" / "keyring")
        self.run("ceph-authtool", "--create-keyring", osd_kr, "-n", "osd.0", "--add-key", osd_key)

        # Monitor.
        monmap = str(d / "monmap")
        self.run(
            "monmaptool", "--create", "--clobber", "--fsid", fsid,
            "--addv", "a", f"[v2:{HOST}:{mon_v2},v1:{HOST}:{mon_v1}]", monmap,
        )  # fmt: skip
        self.run("ceph-mon", "-c", conf, "--mkfs", "-i", "a", "--monmap", monmap, "--keyring", mon_kr)
        mon = self.daemon("mon.a", "ceph-mon", "-f", "-c", conf, "-i", "a")
        self.server._procs.append(mon)

        # OSD 0 in the map, and radosgw's pools up front (one `ceph` process).
        osd_id = self.ceph("osd", "new", osd_uuid, "0", "-i", str(d / "osd-secret.json")).strip()
        if osd_id != "0":
            raise RuntimeError(f"ceph osd new returned id {osd_id!r}, expected 0")
        self.run("ceph-osd", "-c", conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        osd = self.daemon("osd.0", "ceph-osd", "-f", "-c", conf, "-i", "0")
        self.server._procs.append(osd)
        # `ceph` with no command reads commands from stdin: one process for all (~0.3 s each otherwise).
        batch = "".join(f"osd pool create {p} 8 8\nosd pool application enable {p} rgw\n" for p in RGW_POOLS)
        self.ceph(stdin=batch)

        # The gateway's user, then the gateway.
        access_key = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(20))
        secret_key = secrets.token_urlsafe(30)
        self.run(
            "radosgw-admin", "-c", conf, "user", "create", "--uid=tester", "--display-name=tester",
            f"--access-key={access_key}", f"--secret-key={secret_key}",
        )  # fmt: skip
        rgw = self.daemon("client.rgw.a", "radosgw", "-f", "-c", conf, "-n", "client.rgw.a")
        self.server._procs.append(rgw)
        # Stopped in reverse: radosgw, OSD, monitor.  (TERMing radosgw and the OSD together made both
        # hang past 10 s; radosgw alone took 4.7 s until its gc/lc/quota/reshard threads were disabled.)
        while not _http_answers(rgw_port, timeout=min(1.0, self.remaining())):
            for name, proc in (("radosgw", rgw), ("ceph-osd", osd), ("ceph-mon", mon)):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}")
            time.sleep(0.05)
        self.server.endpoint_url = f"http://{HOST}:{rgw_port}"
        self.server.access_key, self.server.secret_key = access_key, secret_key
        self.server.startup_seconds = time.monotonic() - self.started
        return self.server


def start_ceph(workdir: Path, timeout: float = 60) -> S3Server:
    """A throwaway single-node Ceph (mon + memstore OSD + radosgw) on 127.0.0.1; files in workdir."""
    missing = [b for b in CEPH_BINARIES if not shutil.which(b)]
    if missing:
        raise RuntimeError(f"Ceph binaries not on PATH: {', '.join(missing)}; run .ci/install-s3-servers")
    builder = _Ceph(workdir, timeout)
    try:
        return builder.start()
    except BaseException as e:
        builder.server.stop()
        if isinstance(e, KeyboardInterrupt):
            raise
        logs = _logs_tail([*builder.outs, builder.logdir / "commands.log"])
        raise RuntimeError(f"Ceph did not start: {e}\n{logs}") from e
