"""Layered settings: CLI flags > environment variables > TOML file > built-in defaults.

The TOML file is ``./sleap-rtc.toml`` if present, else ``config.toml`` in the
platformdirs user config dir (``~/.config/sleap-rtc`` on Linux), or the path given
with ``--config`` / ``SLEAP_RTC_CONFIG``. It has a ``[default]`` table and one table
per environment under ``[environments.<name>]``; ``SLEAP_RTC_ENV`` (or ``--env``)
picks the environment, whose values override ``[default]``.

Every value remembers where it came from so ``sleap-rtc config show`` can answer the
question lab IT always asks: *why is it using that server?*
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import platformdirs

APP_NAME = "sleap-rtc"
ENVIRONMENTS = ("development", "staging", "production")
ENV_PREFIX = "SLEAP_RTC_"


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the file and key."""


@dataclass(frozen=True)
class Setting:
    """One known key: its default, type, environment variable and meaning."""

    key: str
    default: Any
    type: type
    help: str
    env: str | None = None

    @property
    def env_var(self) -> str:
        return self.env or ENV_PREFIX + self.key.upper().replace(".", "_")


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in [
        Setting("signaling_ws", None, str, "Coordinator websocket URL, e.g. ws://lab-server:8765. Unset: the worker starts an embedded coordinator."),
        Setting("signaling_http", None, str, "Coordinator HTTP base URL (health checks); derived from signaling_ws when unset."),
        Setting("room_id", None, str, "Room to join."),
        Setting("token", None, str, "Room token (keep it out of shared config files; prefer the environment)."),
        Setting("ice_servers", [], list, "STUN/TURN URLs for WebRTC, e.g. ['stun:stun.example.org:3478']. Empty: host candidates only."),
        Setting("ice_loopback", False, bool, "Offer 127.0.0.1 as an ICE candidate (single-machine setups, tests, demo)."),
        Setting("server.host", "127.0.0.1", str, "Address the coordinator binds; 0.0.0.0 to serve a lab network."),
        Setting("server.port", 8765, int, "Coordinator port (websocket and /health)."),
        Setting("server.db", None, str, "Coordinator SQLite file. Unset: coordinator.sqlite3 in the user data dir."),
        Setting("server.heartbeat_interval", 10.0, float, "Seconds between coordinator pings."),
        Setting("server.heartbeat_timeout", 30.0, float, "Seconds of silence after which a peer is dropped."),
        Setting("server.tls_cert", None, str, "PEM certificate (chain) for wss://; with server.tls_key the coordinator speaks TLS. Unset: plain ws:// (loopback, or behind a TLS reverse proxy)."),
        Setting("server.tls_key", None, str, "PEM private key of server.tls_cert."),
        Setting("server.turn_secret", None, str, "Shared secret with the TURN server (coturn static-auth-secret): room members get short-lived TURN credentials derived from it. Unset: no TURN."),
        Setting("server.turn_urls", [], list, "TURN URLs handed to room members, e.g. ['turn:turn.lab.org:3478?transport=udp', 'turn:turn.lab.org:3478?transport=tcp', 'turns:turn.lab.org:443?transport=tcp']."),
        Setting("server.turn_ttl", 3600.0, float, "Seconds the handed-out TURN credentials stay valid (refreshed before a new connection when expired)."),
        Setting("server.stun_urls", [], list, "STUN URLs handed to room members, e.g. ['stun:turn.lab.org:3478']."),
        Setting("server.max_room_ttl_hours", 720.0, float, "Longest room lifetime a create_room may ask for, in hours."),
        Setting("server.room_creation", "open", str, "Who may create rooms: 'open' (anyone who reaches the coordinator, rate-limited) or 'admin' (only with an admin token)."),
        Setting("server.max_connections_per_address", 64, int, "Concurrent websocket connections one remote address may hold."),
        Setting("server.rooms_per_hour", 30.0, float, "Rooms one remote address may create per hour (after a burst of 10)."),
        Setting("server.failed_auth_per_minute", 6.0, float, "Failed token checks one remote address may make per minute (after a burst of 10) before it is refused for a while."),
        Setting("server.limit_loopback", False, bool, "Apply the per-address limits to 127.0.0.1/::1 too (off: local processes, the embedded coordinator and tests are exempt)."),
        Setting("server.max_jobs_per_room", 1000, int, "Unfinished jobs (queued, running, awaiting the client) one room may hold; a submit over it gets `queue_full`. 0: no cap."),
        Setting("server.max_jobs_per_client", 100, int, "Unfinished jobs one client (peer id) may hold in a room; a submit over it gets `queue_full`. 0: no cap."),
        Setting("server.compression", False, bool, "Accept permessage-deflate from peers that offer it. Off: frames go uncompressed (zlib was the largest CPU cost of a discover reply, and compressing relayed secrets beside peer-chosen text invites CRIME-style guessing over TLS)."),
        Setting("server.event_loop", "auto", str, "Event loop of the coordinator: 'auto' (uvloop where installed: the [server] extra, Linux/macOS), 'uvloop' or 'asyncio'. uvloop serves more registrations per core."),
        Setting("server.allow_room_token_workers", False, bool, "Let workers registered with only the room token take queued jobs in rooms whose admin set no policy (`sleap-rtc admin room-policy`); false: only workers enrolled with a worker token."),
        Setting("worker.name", None, str, "Worker display name. Unset: the hostname."),
        Setting("worker.labels", {}, dict, "Worker labels used by discovery filters, e.g. {gpu = 'a100', site = 'lab1'}."),
        Setting("worker.data_dir", None, str, "Where jobs, the outbox and the transfer cache live. Unset: the user data dir."),
        Setting("worker.status_port", 8766, int, "Loopback port of the worker's local status endpoint (sleap-rtc-service status)."),
        Setting("worker.cancel_grace", 10.0, float, "Seconds between SIGTERM and SIGKILL when a job is cancelled."),
        Setting("worker.checkpoint_interval", 60.0, float, "Seconds between checkpoint relays to the client of a queued training job (0: off); a requeued job resumes from the last one."),
        Setting("worker.preauth_timeout", 15.0, float, "Seconds a client has from its offer to a finished room-secret handshake; a link still unauthenticated then is closed."),
        Setting("worker.max_unpacked_mb", 20480, int, "Largest total a job package may unpack to, in MB (zip bomb guard); the worker also refuses a package its free disk cannot hold."),
        Setting("worker.insecure_no_secret", False, bool, "Let a worker that joins an existing room run without a room secret (legacy mode: anyone with the room token may use it)."),
        Setting("worker.executor", "local", str, "Where jobs run: 'local' (child processes of the worker) or 'slurm' (each job submitted with sbatch; see docs/hpc.md)."),
        Setting("worker.slurm.staging_dir", None, str, "Slurm: job dirs on a filesystem every compute node mounts at the same path. Unset: <data_dir>/jobs (then the data dir must be shared)."),
        Setting("worker.slurm.partition", None, str, "Slurm: partition (sbatch --partition); its nodes are what the worker advertises. Unset: the cluster's default."),
        Setting("worker.slurm.account", None, str, "Slurm: account to charge (sbatch --account)."),
        Setting("worker.slurm.qos", None, str, "Slurm: quality of service (sbatch --qos)."),
        Setting("worker.slurm.gres", "gpu:{gpus}", str, "Slurm: --gres for a job that asks {gpus} GPUs, e.g. 'gpu:a100:{gpus}'. Empty: no --gres (CPU partitions)."),
        Setting("worker.slurm.gpus", 1, int, "Slurm: GPUs per job when the job does not ask for a count."),
        Setting("worker.slurm.cpus", 4, int, "Slurm: CPUs per job (sbatch --cpus-per-task)."),
        Setting("worker.slurm.mem_mb", 0, int, "Slurm: memory per job in MB (sbatch --mem). 0: the partition's default."),
        Setting("worker.slurm.time_limit", "24:00:00", str, "Slurm: time limit per job (sbatch --time); a job killed by it is retried from its last checkpoint."),
        Setting("worker.slurm.extra_sbatch", [], list, "Slurm: extra #SBATCH options, one per entry, e.g. ['--constraint=a100', '--exclusive']."),
        Setting("worker.slurm.python", None, str, "Slurm: the Python (with sleap-nn and this package) the compute nodes run. Unset: the worker's own interpreter."),
        Setting("worker.slurm.poll_interval", 5.0, float, "Slurm: seconds between squeue/scontrol polls and progress-file reads."),
        Setting("worker.slurm.gpu_memory_mb", {}, dict, "Slurm: memory per GPU type as sinfo names it, e.g. {a100 = 81920}, advertised for discovery's min_gpu_memory_mb."),
        Setting("transfer.max_file_mb", 20480, int, "Largest file a peer accepts, in MB."),
        Setting("transfer.sctp_tuning", True, bool, "Large SCTP packets and fewer ACKs on the data channel when both peers support it; false: standard packets."),
        Setting("transfer.cache_mb", 10240, int, "Size cap of the content-addressed transfer cache, in MB."),
        Setting("transfer.direct", True, bool, "Send file bytes over a direct TLS stream when ICE shows the peers reach each other directly (LAN, VPN); false: data channel only."),
        Setting("transfer.shared_paths", [], list, "Storage both sides mount, as 'client_prefix=worker_prefix' strings: files under it move as paths, not bytes."),
        Setting("tls_ca", None, str, "PEM file of CA certificates to trust for wss:// coordinators (a private CA or a self-signed certificate). Unset: the system trust store."),
        Setting("client.results_dir", None, str, "Where results land when no SLEAP project dir is given. Unset: the current directory."),
        Setting("client.project_cache_mb", 256, int, "Cap, in MB, of the received-files cache in a project's hidden .sleap-rtc/ folder; installed results are removed from it at once."),
        Setting("gui.worker_refresh_s", 15.0, float, "Seconds between the Train/Track remotely dialogs' automatic worker-list refreshes while they are open."),
    ]
}


def default(key: str) -> Any:
    """The built-in default of ``key``: signatures and --help text read it here, never re-type it."""
    return SETTINGS[key].default


def default_server_url() -> str:
    """The coordinator URL a local tool tries when none is configured."""
    return f"ws://127.0.0.1:{default('server.port')}"


@dataclass
class Settings:
    """Effective settings plus the origin of each value."""

    values: dict[str, Any]
    origins: dict[str, str]
    environment: str | None = None
    file: Path | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value

    def with_overrides(self, **overrides: Any) -> "Settings":
        """Apply non-None CLI values (keys with dots spelled with ``__``)."""
        values, origins = dict(self.values), dict(self.origins)
        for name, value in overrides.items():
            key = name.replace("__", ".")
            if key not in SETTINGS:
                raise ConfigError(f"unknown setting {key!r} given on the command line")
            if value is not None:
                values[key] = _coerce(SETTINGS[key], value, "command line")
                origins[key] = "command line"
        return dataclasses.replace(self, values=values, origins=origins)


def user_config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def user_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_config_path(cwd: Path | None = None) -> Path | None:
    local = (cwd or Path.cwd()) / "sleap-rtc.toml"
    if local.is_file():
        return local
    user = user_config_dir() / "config.toml"
    return user if user.is_file() else None


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    *,
    environment: str | None = None,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve every setting from its four layers.

    ``env`` defaults to ``os.environ`` and ``cli`` holds flag values (``None`` means
    "not given"); both are parameters so the precedence is testable without touching
    the process environment.
    """
    env = os.environ if env is None else env
    values = {k: s.default for k, s in SETTINGS.items()}
    origins = {k: "default" for k in SETTINGS}

    environment = environment or env.get("SLEAP_RTC_ENV") or None
    if environment is not None and environment not in ENVIRONMENTS:
        raise ConfigError(
            f"SLEAP_RTC_ENV={environment!r} is not a known environment; use one of: {', '.join(ENVIRONMENTS)}"
        )

    path = Path(config_path) if config_path else (Path(env["SLEAP_RTC_CONFIG"]) if env.get("SLEAP_RTC_CONFIG") else default_config_path())
    if path is not None:
        data = _read_toml(path)
        _apply_table(values, origins, data.get("default", {}), path, "default")
        envs = data.get("environments", {})
        if not isinstance(envs, dict):
            raise ConfigError(f"{path}: [environments] must be a table")
        for name in envs:
            if name not in ENVIRONMENTS:
                raise ConfigError(f"{path}: unknown environment [environments.{name}]; use one of: {', '.join(ENVIRONMENTS)}")
        if environment and environment in envs:
            _apply_table(values, origins, envs[environment], path, f"environments.{environment}")
        for top in data:
            if top not in ("default", "environments"):
                raise ConfigError(f"{path}: unknown top-level table [{top}]; settings go under [default] or [environments.<name>]")

    for key, setting in SETTINGS.items():
        raw = env.get(setting.env_var)
        if raw is not None and raw != "":
            values[key] = _coerce_env(setting, raw)
            origins[key] = f"env {setting.env_var}"

    settings = Settings(values, origins, environment, path)
    if cli:
        settings = settings.with_overrides(**cli)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and key not in SETTINGS:
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def _apply_table(values: dict, origins: dict, table: Any, path: Path, where: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{where}] must be a table")
    for key, value in _flatten(table).items():
        if key not in SETTINGS:
            raise ConfigError(f"{path}: unknown key {key!r} in [{where}]; see config.example.toml for the known keys")
        values[key] = _coerce(SETTINGS[key], value, f"{path} [{where}] {key}")
        origins[key] = f"{path} [{where}]"


def _coerce(setting: Setting, value: Any, where: str) -> Any:
    if setting.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if setting.type is list and isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, setting.type) or (setting.type is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {setting.key} must be {setting.type.__name__}, not {type(value).__name__}")
    return value


def _coerce_env(setting: Setting, raw: str) -> Any:
    where = f"environment variable {setting.env_var}"
    try:
        if setting.type is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if setting.type is int:
            return int(raw)
        if setting.type is float:
            return float(raw)
        if setting.type is list:
            return [v.strip() for v in raw.split(",") if v.strip()]
        if setting.type is dict:
            return dict(item.split("=", 1) for item in raw.split(",") if item.strip())
    except ValueError:
        raise ConfigError(f"{where}={raw!r} is not a valid {setting.type.__name__}") from None
    return raw


def room_secret_env_var(room_id: str) -> str:
    """``SLEAP_RTC_ROOM_SECRET_<ROOM_ID>`` with the id upper-cased and non-alphanumerics as ``_``."""
    return ENV_PREFIX + "ROOM_SECRET_" + "".join(c if c.isalnum() else "_" for c in room_id.upper())


def format_settings(settings: Settings) -> str:
    """Human table for ``sleap-rtc config show``; the token is masked."""
    lines = [
        f"config file: {settings.file or '(none found; using defaults)'}",
        f"environment: {settings.environment or '(none; SLEAP_RTC_ENV unset)'}",
        "",
    ]
    width = max(len(k) for k in SETTINGS)
    for key in SETTINGS:
        value = settings.values[key]
        if key == "token" and value:
            value = value[:4] + "…"
        elif key in SECRET_SETTINGS and value:
            value = "***"
        lines.append(f"{key:<{width}}  {value!r:<32}  ({settings.origins[key]})")
    return "\n".join(lines)


#: Settings never printed (``config show``): shared secrets.
SECRET_SETTINGS = ("server.turn_secret",)


def settings_as_dict(settings: Settings) -> dict[str, Any]:
    return {
        "file": str(settings.file) if settings.file else None,
        "environment": settings.environment,
        "settings": {
            k: {"value": ("***" if k in ("token", *SECRET_SETTINGS) and settings.values[k] else settings.values[k]), "origin": settings.origins[k]}
            for k in SETTINGS
        },
    }


__all__ = [
    "ConfigError",
    "ENVIRONMENTS",
    "SETTINGS",
    "Settings",
    "default",
    "default_server_url",
    "format_settings",
    "load_settings",
    "room_secret_env_var",
    "settings_as_dict",
    "user_config_dir",
    "user_data_dir",
]
