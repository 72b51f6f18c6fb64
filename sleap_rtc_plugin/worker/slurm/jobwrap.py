"""What runs inside the Slurm job, on the compute node: sleap-nn plus a file relay.

    python -P -m sleap_rtc_plugin.worker.slurm.jobwrap STATE_DIR -- python -P -m sleap_nn.cli ARGS...

sleap-nn's progress publisher and Stop Early controller only ever connect to
``tcp://127.0.0.1:<port>``, so something on the compute node must bind those ports.
This relay binds them, appends every progress message to ``STATE_DIR/events.jsonl``
and, once ``STATE_DIR/stop`` appears, sends ``{"command": "stop"}`` to sleap-nn until
it exits. The worker on the login node reads and writes only those files on the
shared staging filesystem: no connection from a compute node back to the login node
(which cluster firewalls often forbid) and nothing lost when the worker restarts.
SIGTERM (scancel, a time limit) is passed on to sleap-nn; its exit status is written
to ``STATE_DIR/exit_code`` and returned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_PORT_KEYS = {"publish": "++trainer_config.zmq.publish_port=", "controller": "++trainer_config.zmq.controller_port="}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(args: list[str]) -> int:
    state_dir, sep, argv = Path(args[0]), args[1], args[2:]
    if sep != "--" or not argv:
        sys.exit("usage: jobwrap STATE_DIR -- COMMAND...")
    sub: Any = None  # zmq sockets and context, only when the command publishes progress
    pub: Any = None
    ctx: Any = None
    if any(a.startswith(_PORT_KEYS["publish"]) for a in argv):
        import zmq

        ctx = zmq.Context()
        sub, pub = ctx.socket(zmq.SUB), ctx.socket(zmq.PUB)
        sub.setsockopt_string(zmq.SUBSCRIBE, "")
        ports = {"publish": sub.bind_to_random_port("tcp://127.0.0.1"), "controller": pub.bind_to_random_port("tcp://127.0.0.1")}
        argv = [next((key + str(ports[k]) for k, key in _PORT_KEYS.items() if a.startswith(key)), a) for a in argv]
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    _write_atomic(state_dir / "started", json.dumps({"host": os.uname().nodename, "pid": os.getpid(), "at": time.time()}))

    def forward(signum, _frame) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    stop_file, last_stop = state_dir / "stop", 0.0
    with open(state_dir / "events.jsonl", "a", encoding="utf-8") as events:
        def relay(timeout_ms: int) -> bool:
            if sub is None or not sub.poll(timeout_ms):
                return False
            raw = sub.recv_string().replace("\n", " ")
            events.write(raw + "\n")
            events.flush()
            return True

        while child.poll() is None:
            if sub is None:
                time.sleep(0.2)
            else:
                relay(200)
                if time.monotonic() - last_stop > 0.5 and stop_file.exists():
                    pub.send_string(json.dumps({"command": "stop"}))
                    last_stop = time.monotonic()
        while relay(300):  # messages sent just before exit
            pass
    rc = child.wait()
    if ctx is not None:
        sub.close(0)
        pub.close(0)
        ctx.term()
    _write_atomic(state_dir / "exit_code", str(rc))
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
