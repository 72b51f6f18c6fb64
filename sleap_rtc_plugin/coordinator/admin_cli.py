"""``sleap-rtc admin ...``: workers, jobs, drain, labels, worker tokens, audit.

``admin init --db PATH`` writes an admin token straight into the coordinator's
database (whoever can write that file already controls the coordinator) and prints
it once. Every other action goes over the coordinator socket with that token
(``--admin-token`` or ``$SLEAP_RTC_ADMIN_TOKEN``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from ..config import default_server_url
from ..protocol.job_state import JobState, QUEUE_STATES
from .client import CoordinatorError, admin_request

#: The queue's states, in the order a job passes them (protocol/job_state.py).
QUEUE_STATE_NAMES = [s.value for s in JobState if s in QUEUE_STATES]

DEFAULT_URL = default_server_url()
TOKEN_ENV = "SLEAP_RTC_ADMIN_TOKEN"


def _kv(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"sleap-rtc admin: error: label {item!r} must look like key=value (globs like gpu=a100* are for job requirements)")
        out[key] = value
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="admin_command", metavar="ACTION", required=True)

    def connection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", default=None, help=f"coordinator URL (default: config signaling_ws, else {DEFAULT_URL})")
        p.add_argument("--admin-token", default=None, help=f"admin token (default ${TOKEN_ENV})")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if name not in ("init", "token"):
            connection(p)
        return p

    init = action("init", "create an admin token in the coordinator database and print it (shown once)")
    init.add_argument("--db", required=True, help="the coordinator's SQLite file (`sleap-rtc server --db`)")
    init.add_argument("--name", default="admin", help="a name for this token, shown in the audit log (default admin)")

    workers = action("workers", "list workers: status, labels, drain, token, current job")
    workers.add_argument("--room-id", default=None)
    jobs = action("jobs", "list queued, running and finished jobs (newest first)")
    jobs.add_argument("--room-id", default=None)
    jobs.add_argument("--state", default=None, choices=QUEUE_STATE_NAMES)
    jobs.add_argument("--limit", type=int, default=50)
    for name, help_text in (("drain", "let WORKER finish its job, then take no new ones (until undrain)"), ("undrain", "let WORKER take jobs again")):
        p = action(name, help_text)
        p.add_argument("worker_id", metavar="WORKER")
        p.add_argument("--room-id", default=None, help="needed only when the worker id exists in several rooms")
    labels = action("labels", "set WORKER's admin labels (they win over the worker's own and survive re-registration)")
    labels.add_argument("worker_id", metavar="WORKER")
    labels.add_argument("labels", nargs="*", metavar="KEY=VALUE", help="no pairs clears them")
    labels.add_argument("--room-id", default=None)
    policy = action("room-policy", "show or set whether workers registered with only the room token may take queued jobs in ROOM")
    policy.add_argument("room_id", metavar="ROOM")
    choice = policy.add_mutually_exclusive_group()
    choice.add_argument("--allow-room-token-workers", dest="allow", action="store_const", const=True,
                        help="any worker with the room token may take this room's queued jobs (trusts every room-token holder)")
    choice.add_argument("--deny-room-token-workers", dest="allow", action="store_const", const=False,
                        help="only workers enrolled with `sleap-rtc admin token create` take queued jobs (the secure default)")
    choice.add_argument("--server-default", dest="allow", action="store_const", const="default",
                        help="forget this room's choice and follow the coordinator's server.allow_room_token_workers")
    cancel = action("cancel", "cancel a queued or running job")
    cancel.add_argument("job_id", metavar="JOB")
    audit = action("audit", "show the audit log (oldest first)")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--kind", default=None, help="only entries of this kind (* is a wildcard, e.g. 'token_*')")
    audit.add_argument("--since", type=float, default=None, help="only entries at or after this unix time")

    token = action("token", "worker tokens: create, rotate, revoke")
    token_sub = token.add_subparsers(dest="token_command", metavar="TOKEN_ACTION", required=True)
    for name, help_text in (
        ("create", "create WORKER's token (printed once; the coordinator keeps only its SHA-256)"),
        ("rotate", "replace WORKER's token; the old one stops working for new registrations"),
        ("revoke", "remove WORKER's token and disconnect it if connected with it"),
    ):
        p = token_sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        connection(p)
        p.add_argument("worker_id", metavar="WORKER")
        p.add_argument("--room-id", default=None, required=name == "create")
        if name == "create":
            p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="admin label (repeatable)")


def _request_args(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    cmd = args.admin_command
    if cmd == "workers":
        return "workers", {"room_id": args.room_id} if args.room_id else {}
    if cmd == "jobs":
        out: dict[str, Any] = {"limit": args.limit}
        if args.room_id:
            out["room_id"] = args.room_id
        if args.state:
            out["state"] = args.state
        return "jobs", out
    if cmd in ("drain", "undrain"):
        return cmd, {"worker_id": args.worker_id, **({"room_id": args.room_id} if args.room_id else {})}
    if cmd == "labels":
        return "labels", {"worker_id": args.worker_id, "labels": _kv(args.labels), **({"room_id": args.room_id} if args.room_id else {})}
    if cmd == "cancel":
        return "cancel", {"job_id": args.job_id}
    if cmd == "room-policy":
        out = {"room_id": args.room_id}
        if args.allow is not None:
            out["allow_room_token_workers"] = None if args.allow == "default" else args.allow
        return "room_policy", out
    if cmd == "audit":
        out = {"limit": args.limit}
        if args.kind:
            out["kind"] = args.kind
        if args.since is not None:
            out["since"] = args.since
        return "audit", out
    if cmd == "token":
        out = {"worker_id": args.worker_id, **({"room_id": args.room_id} if args.room_id else {})}
        if args.token_command == "create" and args.label:
            out["labels"] = _kv(args.label)
        return f"token_{args.token_command}", out
    raise SystemExit(f"sleap-rtc admin: error: unknown action {cmd!r}")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def format_result(action: str, result: Any) -> str:
    """Readable text for a person; ``--json`` prints the raw result instead."""
    if action == "workers":
        lines = [f"{'ROOM':<14} {'WORKER':<20} {'STATUS':<10} {'DRAINED':<8} {'TOKEN':<6} {'JOB':<14} LABELS"]
        for w in result:
            labels = " ".join(f"{k}={v}" for k, v in sorted((w.get("labels") or {}).items()))
            lines.append(f"{w['room_id']:<14} {w['worker_id']:<20} {w['status']:<10} {'yes' if w['drained'] else 'no':<8} {'yes' if w['has_token'] else 'no':<6} {w.get('job') or '-':<14} {labels}")
        return "\n".join(lines)
    if action == "jobs":
        lines = [f"{'JOB':<26} {'ROOM':<14} {'STATE':<11} {'POS':<4} {'PRI':<4} {'ATT':<4} {'RETRY':<6} {'WORKER':<20} MESSAGE"]
        for j in result:
            pos = "-" if j.get("position") is None else str(j["position"])
            lines.append(f"{j['job_id']:<26} {j['room_id']:<14} {j['state']:<11} {pos:<4} {j['priority']:<4} {j['attempt']:<4} {j['retries']}/{j['max_retries']:<4} {j.get('worker_id') or '-':<20} {j.get('message', '')}")
        return "\n".join(lines)
    if action == "audit":
        return "\n".join(
            f"{_when(e['ts'])} {e['kind']:<18} {e['actor']:<24} {e.get('room_id') or '-':<14} {e.get('subject') or '-':<20} {json.dumps(e['detail'], separators=(',', ':'))}"
            for e in result
        )
    if action in ("token_create", "token_rotate"):
        return (
            f"worker:  {result['worker_id']} (room {result['room_id']})\n"
            f"token:   {result['token']}\n"
            "The token is shown only now; the coordinator stores only its hash. Start the worker with it as --token."
        )
    return json.dumps(result, indent=2)


async def run_async(args: argparse.Namespace) -> int:
    if args.admin_command == "init":
        from .jobstore import JobStore
        from .store import RoomStore

        store = RoomStore(args.db)
        await store.open()
        try:
            jobs = JobStore(store)
            await jobs.open()
            token = await jobs.create_admin_token(args.name)
            await jobs.audit("admin_token_created", "local", subject=args.name)
        finally:
            await store.close()
        print(f"admin token: {token}")
        print(f"Shown only now; the coordinator stores only its hash. Use it with --admin-token or ${TOKEN_ENV}.")
        return 0
    token = args.admin_token or os.environ.get(TOKEN_ENV) or ""
    if not token:
        print(f"sleap-rtc admin: error: no admin token; pass --admin-token or set ${TOKEN_ENV} (create one with `sleap-rtc admin init --db DB`)", file=sys.stderr)
        return 2
    server = args.server
    if server is None:
        settings = getattr(args, "settings", None)
        server = (settings.get("signaling_ws") if settings is not None else None) or DEFAULT_URL
    action, request = _request_args(args)
    try:
        result = await admin_request(server, token, action, request)
    except CoordinatorError as exc:
        print(f"sleap-rtc admin: error: {exc.message} ({exc.code})", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else format_result(action, result))
    return 0


def run(args: argparse.Namespace):
    """Entry for the top-level CLI (it runs the returned coroutine)."""
    return run_async(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sleap-rtc admin", description="Administer a sleap-rtc coordinator.")
    add_arguments(parser)
    return asyncio.run(run_async(parser.parse_args(argv)))
