"""``sleap-rtc-service status``: the OS view and the worker's own view, merged.

The OS knows whether the unit is installed, active, since when, and how often it was
restarted; only the worker knows whether it is connected and what it is doing. The
worker's view comes from its loopback ``GET /status`` endpoint, so this module needs
nothing but a port number and works against any running worker.

Exit codes (stable, for scripts and monitoring):
  0 running and connected to the coordinator
  1 error (the status command itself failed)
  2 running, but not connected to the coordinator or the status endpoint is unreachable
  3 stopped (inactive or failed) — the LSB "not running" code
  4 not installed
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import default as setting_default

SCHEMA_VERSION = 1
EXIT_OK, EXIT_ERROR, EXIT_DEGRADED, EXIT_STOPPED, EXIT_NOT_INSTALLED = 0, 1, 2, 3, 4
HEALTH_BY_CODE = {0: "running", 1: "error", 2: "degraded", 3: "stopped", 4: "not-installed"}


@dataclass
class OsView:
    """What the service manager reports about one unit / Windows service."""

    unit: str
    manager: str
    installed: bool
    enabled: str | None = None
    active_state: str | None = None
    sub_state: str | None = None
    active_since: str | None = None
    restarts: int | None = None
    main_pid: int | None = None

    @property
    def running(self) -> bool:
        return self.active_state in ("active", "activating", "reloading", "deactivating")

    @classmethod
    def from_systemd(cls, unit: str, props: dict[str, str], installed: bool) -> "OsView":
        def as_int(key: str) -> int | None:
            value = props.get(key, "")
            return int(value) if value.isdigit() else None

        installed = installed or props.get("LoadState") == "loaded"
        return cls(
            unit=unit,
            manager="systemd",
            installed=installed,
            enabled=props.get("UnitFileState") or None,
            active_state=props.get("ActiveState") or None,
            sub_state=props.get("SubState") or None,
            active_since=props.get("ActiveEnterTimestamp") or None,
            restarts=as_int("NRestarts"),
            main_pid=(as_int("MainPID") or None),
        )


@dataclass
class Endpoint:
    url: str
    reachable: bool
    error: str | None = None


@dataclass
class UnitStatus:
    service: OsView | None
    endpoint: Endpoint
    worker: dict[str, Any] | None
    exit_code: int = EXIT_ERROR
    health: str = "error"
    problems: list[str] = field(default_factory=list)


def resolve_status_port(config: Path | None, env: dict[str, str], default: int = setting_default("worker.status_port")) -> int:
    """The port the service's worker listens on: its env files, then its config, then the ``worker.status_port`` default.

    Only the service's own files count (never this shell's environment): the worker sees
    exactly those. An unreadable or broken config falls back to the default.
    """
    from ..config import ConfigError, SETTINGS, load_settings

    raw = env.get(SETTINGS["worker.status_port"].env_var)
    if raw and raw.strip().isdigit():
        return int(raw)
    if config is None or not config.is_file():
        return default
    try:
        return int(load_settings(config, env=env).get("worker.status_port", default))
    except (ConfigError, OSError, ValueError):
        return default


def fetch_worker_status(port: int, host: str = "127.0.0.1", timeout: float = 3.0) -> tuple[Endpoint, dict[str, Any] | None]:
    """GET the worker's snapshot; never raises — an unreachable endpoint is a state, not an error."""
    url = f"http://{host}:{port}/status"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = json.loads(response.read().decode("utf-8"))
        if not isinstance(data, dict):
            return Endpoint(url, False, "endpoint did not return a JSON object"), None
        return Endpoint(url, True), data
    except urllib.error.HTTPError as exc:
        return Endpoint(url, False, f"HTTP {exc.code}"), None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Endpoint(url, False, str(reason)), None


def evaluate(service: OsView | None, endpoint: Endpoint, worker: dict[str, Any] | None) -> UnitStatus:
    """Decide health and exit code. ``service=None`` means no service manager (a worker run by hand)."""
    status = UnitStatus(service, endpoint, worker)
    if service is not None and not service.installed:
        code, status.problems = EXIT_NOT_INSTALLED, [f"{service.unit} is not installed"]
    elif service is not None and not service.running:
        code = EXIT_STOPPED
        status.problems.append(f"{service.unit} is {service.active_state or 'not running'}" + (f" ({service.sub_state})" if service.sub_state else ""))
    elif worker is None:
        code = EXIT_DEGRADED
        status.problems.append(f"status endpoint {endpoint.url} unreachable: {endpoint.error}")
    elif not (worker.get("coordinator") or {}).get("connected"):
        code = EXIT_DEGRADED
        url = (worker.get("coordinator") or {}).get("url")
        status.problems.append(f"worker is not connected to the coordinator{f' at {url}' if url else ''}")
    else:
        code = EXIT_OK
    if worker and worker.get("last_error"):
        status.problems.append(f"last error: {worker['last_error']}")
    status.exit_code, status.health = code, HEALTH_BY_CODE[code]
    return status


def combined_exit_code(statuses: list[UnitStatus]) -> int:
    """Several instances: the worst one wins (not-installed < stopped < degraded < ok)."""
    if not statuses:
        return EXIT_NOT_INSTALLED
    rank = {EXIT_OK: 0, EXIT_DEGRADED: 1, EXIT_STOPPED: 2, EXIT_NOT_INSTALLED: 3, EXIT_ERROR: 4}
    return max((s.exit_code for s in statuses), key=rank.__getitem__)


def to_json(statuses: list[UnitStatus], scope: str | None) -> dict[str, Any]:
    """The ``--json`` document (schema documented in docs/lab-it.md; bump SCHEMA_VERSION on breaking change)."""
    return {
        "schema": SCHEMA_VERSION,
        "scope": scope,
        "exit_code": combined_exit_code(statuses),
        "health": HEALTH_BY_CODE[combined_exit_code(statuses)],
        "units": [
            {
                "health": s.health,
                "exit_code": s.exit_code,
                "problems": s.problems,
                "service": asdict(s.service) if s.service else None,
                "endpoint": asdict(s.endpoint),
                "worker": s.worker,
            }
            for s in statuses
        ],
    }


def _age(started: Any) -> str:
    if not isinstance(started, (int, float)):
        return "-"
    seconds = max(0, int(time.time() - started))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}d{hours}h" if days else f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _job(job: Any) -> str:
    if not isinstance(job, dict):
        return "-"
    progress = job.get("progress") or {}
    bits = []
    if isinstance(progress, dict):
        if "epoch" in progress:
            bits.append(f"epoch {progress['epoch']}" + (f"/{progress['epochs']}" if progress.get("epochs") else ""))
        if "n_processed" in progress:
            bits.append(f"{progress['n_processed']}/{progress.get('n_total', '?')} frames")
        if isinstance(progress.get("loss"), (int, float)):
            bits.append(f"loss {progress['loss']:.4g}")
    return f"{job.get('kind', '?')} {job.get('id', '?')}" + (f" ({', '.join(bits)})" if bits else "")


def _gpus(gpus: Any) -> str:
    if not isinstance(gpus, list) or not gpus:
        return "none (CPU)"
    names: list[str] = []
    for gpu in gpus:
        if isinstance(gpu, dict):
            name = gpu.get("name", "?")
            mem = gpu.get("memory_total_mb") or gpu.get("memory_mb")
            names.append(f"{gpu.get('index', len(names))}: {name}" + (f" {mem // 1024 if isinstance(mem, int) else mem} GiB" if mem else ""))
        else:
            names.append(str(gpu))
    return "; ".join(names)


def render_table(statuses: list[UnitStatus]) -> str:
    """Compact two-column table per unit; problems last, so the eye lands on them."""
    blocks = []
    for s in statuses:
        rows: list[tuple[str, str]] = []
        if s.service:
            svc = s.service
            state = f"{svc.active_state or '-'}" + (f" ({svc.sub_state})" if svc.sub_state else "")
            rows += [
                ("unit", f"{svc.unit}  [{svc.manager}, {'not installed' if not svc.installed else (svc.enabled or '-')}]"),
                ("state", state + (f" since {svc.active_since}" if svc.active_since and svc.running else "")),
                ("restarts", "-" if svc.restarts is None else str(svc.restarts)),
            ]
        w = s.worker
        if w is not None:
            coord = w.get("coordinator") or {}
            rows += [
                ("coordinator", f"{'connected' if coord.get('connected') else 'NOT connected'}  {coord.get('url') or ''}".rstrip()),
                ("room / peer", f"{w.get('room_id') or '-'} / {w.get('peer_id') or '-'}"),
                ("worker", f"{w.get('status') or '-'}, pid {w.get('pid', '-')}, up {_age(w.get('started_at'))}, v{w.get('version', '?')}"),
                ("job", _job(w.get("job"))),
                ("gpus", _gpus(w.get("gpus"))),
            ]
        else:
            rows.append(("endpoint", f"{s.endpoint.url} unreachable"))
        rows.append(("health", f"{s.health.upper()} (exit {s.exit_code})"))
        rows += [("problem", p) for p in s.problems]
        width = max(len(k) for k, _ in rows)
        blocks.append("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return "\n\n".join(blocks) if blocks else "no worker units installed"
