"""One side of a real aiortc link, run inside a lab namespace; signaling over stdin/stdout.

``python peer_probe.py offer|answer --ice JSON``: prints ``{"sdp": ...}`` (its offer or
answer), reads the other side's payload as one JSON line on stdin, opens the link with
the project's ``connect``/``accept``, checks that messages flow both ways (the mutual
PSK challenge), and prints ``{"path": PathReport, "setup_s": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from sleap_rtc_plugin.peer import FastPaths, sctp_tuning
from sleap_rtc_plugin.peer.connection import accept, connect


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_line() -> dict:
    line = await asyncio.to_thread(sys.stdin.readline)
    return json.loads(line)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["offer", "answer"])
    parser.add_argument("--ice", default="[]")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--tuned", action="store_true", help="announce large SCTP packets (FastPaths(sctp=True))")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LAB_LOG", "WARNING"), stream=sys.stderr)
    ice = json.loads(args.ice)
    fastpaths = FastPaths(direct=False, sctp=True) if args.tuned else None
    if args.role == "offer":
        async def send_offer(payload: dict) -> dict:
            emit({"sdp": payload})
            return await read_line()

        link = await connect(send_offer, ice_servers=ice, timeout=args.timeout, allow_loopback=False, peer_id="b", fastpaths=fastpaths)
    else:
        answer, opening = await accept(await read_line(), ice_servers=ice, timeout=args.timeout, allow_loopback=False, peer_id="a", fastpaths=fastpaths)
        emit({"sdp": answer})
        link = await opening
    await link.authenticate("lab-secret", timeout=args.timeout)
    emit({"path": link.path.as_dict() if link.path else None, "setup_s": link.setup_seconds,
          "large_packets": link.transport.large_packets, "userdata_size": sctp_tuning.userdata_size(link.transport.pc.sctp)})
    await asyncio.sleep(0.5)  # let the other side finish its challenge before closing
    await link.close()


if __name__ == "__main__":
    asyncio.run(main())
