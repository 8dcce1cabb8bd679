"""``was-admin`` client commands: keygen, provision, put, get, ls, rm, share and check.

Each prints what an operator needs (a URL, a listing, a capability) on
stdout and one line per problem on stderr.  Exit codes: 0 done, 1 the
server refused (or a check failed), 2 bad usage or an unusable local file,
3 the server could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

from .http import Reply, Unreachable, request, space_url
from .keys import KeyFileError, KeyPair
from .signing import delegate, root_capability

OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3


class CommandError(Exception):
    """A failure with its exit code; the message is the one line printed."""

    def __init__(self, message: str, code: int = REFUSED) -> None:
        super().__init__(message)
        self.code = code


def _key(args: argparse.Namespace, required: bool = True) -> KeyPair | None:
    if args.key is None:
        if required:
            raise CommandError("--key KEYFILE is required (make one with: was-admin keygen KEYFILE).", USAGE)
        return None
    try:
        return KeyPair.load(args.key)
    except KeyFileError as exc:
        raise CommandError(str(exc), USAGE) from None


def _capability(args: argparse.Namespace) -> dict[str, Any] | None:
    path = getattr(args, "capability", None)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path} is not a readable capability file ({exc}).", USAGE) from None
    if not isinstance(doc, dict) or "proof" not in doc:
        raise CommandError(f"{path} is not a delegated capability (no proof).", USAGE)
    return doc


def _expect(reply: Reply, what: str) -> Reply:
    if not reply.ok:
        raise CommandError(f"{what} failed: {reply.problem()}")
    return reply


def keygen(args: argparse.Namespace) -> int:
    key = KeyPair.generate()
    try:
        key.save(args.path)
    except KeyFileError as exc:
        raise CommandError(str(exc), USAGE) from None
    print(key.did)
    return OK


def provision(args: argparse.Namespace) -> int:
    key = _key(args)
    assert key is not None
    space_id = args.id or str(uuid.uuid4())
    url = f"{args.server.rstrip('/')}/space/{space_id}"
    doc: dict[str, str] = {"id": space_id, "controller": key.did}
    if args.name:
        doc["name"] = args.name
    body = json.dumps(doc).encode()
    _expect(request("PUT", url, key=key, body=body, content_type="application/json"), f"PUT {url}")
    print(url)
    return OK


def put(args: argparse.Namespace) -> int:
    key = _key(args)
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()  # noqa: SIM115
    except OSError as exc:
        raise CommandError(f"{args.file}: {exc.strerror}.", USAGE) from None
    reply = request("PUT", args.url, key=key, capability=_capability(args), body=data, content_type=args.type)
    _expect(reply, f"PUT {args.url}")
    return OK


def get(args: argparse.Namespace) -> int:
    key = _key(args, required=False)
    reply = _expect(request("GET", args.url, key=key, capability=_capability(args)), f"GET {args.url}")
    if args.output:
        with open(args.output, "wb") as f:
            f.write(reply.body)
    else:
        sys.stdout.buffer.write(reply.body)
        sys.stdout.buffer.flush()
    return OK


def ls(args: argparse.Namespace) -> int:
    key = _key(args, required=False)
    url = args.url if args.url.endswith("/") else args.url + "/"
    while url:
        reply = _expect(request("GET", url, key=key, capability=_capability(args)), f"GET {url}")
        listing = reply.json()
        for item in listing.get("items", []):
            size = item.get("size", "")
            print(f"{item.get('id', '')}\t{size}\t{item.get('contentType', '')}".rstrip("\t"))
        url = listing.get("next") or ""
    return OK


def rm(args: argparse.Namespace) -> int:
    key = _key(args)
    _expect(request("DELETE", args.url, key=key, capability=_capability(args)), f"DELETE {args.url}")
    return OK


def _policy_url(url: str) -> str:
    return url.rstrip("/") + "/policy"


def share(args: argparse.Namespace) -> int:
    key = _key(args)
    assert key is not None
    if args.public:
        body = json.dumps({"type": "PublicCanRead"}).encode()
        target = _policy_url(args.url)
        _expect(request("PUT", target, key=key, body=body, content_type="application/json"), f"PUT {target}")
        print(f"{args.url} is now readable by anyone")
        return OK
    if not args.to:
        raise CommandError("share needs --to DID (delegate a capability) or --public.", USAGE)
    parent: str | dict[str, Any] = _capability(args) or root_capability(space_url(args.url))
    actions = [a.strip().upper() for a in args.actions.split(",") if a.strip()]
    capability = delegate(
        key, parent, args.url, args.to, expires=time.time() + args.expires, actions=actions or None
    )
    text = json.dumps(capability, indent=2) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return OK


def check(args: argparse.Namespace) -> int:
    """Smoke-test a deployment: each step prints ok or why not; the first failure stops it."""
    base = args.url.rstrip("/")
    key = KeyPair.generate()
    space = f"{base}/space/{uuid.uuid4()}"
    data = b"was-admin check " + uuid.uuid4().hex.encode()
    origin = "https://wallet.example"
    preflight_headers = {"origin": origin, "access-control-request-method": "PUT"}

    def step(name: str, reply: Reply, want: int) -> Reply:
        if reply.status != want:
            raise CommandError(f"check {name}: expected {want}, got {reply.problem()}")
        print(f"ok   {name}")
        return reply

    step("health", request("GET", f"{base}/health"), 200)
    step("ready", request("GET", f"{base}/ready"), 200)
    body = json.dumps({"id": space.rsplit("/", 1)[1], "controller": key.did}).encode()
    created = request("PUT", space, key=key, body=body, content_type="application/json")
    if created.status not in (201, 204):
        raise CommandError(f"check provision: expected 201, got {created.problem()}")
    print("ok   provision")
    resource = f"{space}/check/hello.txt"
    step("write", request("PUT", resource, key=key, body=data, content_type="text/plain"), 204)
    read = step("read", request("GET", resource, key=key), 200)
    if read.body != data:
        raise CommandError("check read: the bytes read back differ from those written")
    step("delete resource", request("DELETE", resource, key=key), 204)
    step("delete space", request("DELETE", space, key=key), 204)
    cors = step("CORS preflight", request("OPTIONS", resource, headers=preflight_headers), 204)
    if cors.headers.get("access-control-allow-origin") not in ("*", origin):
        raise CommandError("check CORS preflight: no Access-Control-Allow-Origin for a browser wallet")
    print(f"{base} passed every check")
    return OK


def add_commands(sub: Any) -> None:
    """The client commands, on an ``argparse`` subparsers object."""

    def command(name: str, run: Any, help: str, *, keyed: bool = True, cap: bool = False) -> Any:
        parser = sub.add_parser(name, help=help, description=help)
        parser.set_defaults(run=run)
        if keyed:
            parser.add_argument("--key", metavar="KEYFILE", help="the signer's key file (was-admin keygen)")
        if cap:
            parser.add_argument(
                "--capability", metavar="FILE", help="invoke this delegated capability (was-admin share)"
            )
        return parser

    p = command(
        "keygen", keygen, "make an Ed25519 did:key; write it to PATH (mode 0600), print the DID", keyed=False
    )
    p.add_argument("path", metavar="PATH")
    p = command("provision", provision, "create a space controlled by KEYFILE's DID; print its URL")
    p.add_argument("server", metavar="SERVER_URL", help="e.g. https://storage.example.com")
    p.add_argument("--id", help="the space id (default: a fresh UUID)")
    p.add_argument("--name", help="a human-readable name")
    p = command("put", put, "write FILE (or - for stdin) at URL", cap=True)
    p.add_argument("url", metavar="URL")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--type", default="application/octet-stream", help="its Content-Type")
    p = command("get", get, "read URL (unsigned without --key: a public read)", cap=True)
    p.add_argument("url", metavar="URL")
    p.add_argument("-o", "--output", metavar="FILE", help="write the body here (default: stdout)")
    p = command("ls", ls, "list a container (every page): id, size, type", cap=True)
    p.add_argument("url", metavar="URL")
    p = command("rm", rm, "delete a resource, a collection or a space", cap=True)
    p.add_argument("url", metavar="URL")
    p = command("share", share, "delegate a capability for URL to a DID, or make URL public", cap=True)
    p.add_argument("url", metavar="URL")
    p.add_argument("--to", metavar="DID", help="the DID that may invoke it")
    p.add_argument("--actions", default="GET", help="comma-separated HTTP methods (default GET)")
    p.add_argument("--expires", type=int, default=86400, help="seconds it lasts (default 86400)")
    p.add_argument("--public", action="store_true", help="PublicCanRead: anyone may GET and HEAD")
    p.add_argument("-o", "--output", metavar="FILE", help="write the capability here (default: stdout)")
    p = command("check", check, "smoke-test a deployment end to end (a throwaway key and space)", keyed=False)
    p.add_argument("url", metavar="SERVER_URL")


def run(args: argparse.Namespace) -> int:
    """Run a parsed client command; errors become one line on stderr and an exit code."""
    try:
        code: int = args.run(args)
        return code
    except CommandError as exc:
        print(f"was-admin: {exc}", file=sys.stderr)
        return exc.code
    except ValueError as exc:
        print(f"was-admin: {exc}", file=sys.stderr)
        return USAGE
    except Unreachable as exc:
        print(f"was-admin: cannot reach {exc}", file=sys.stderr)
        return UNREACHABLE
