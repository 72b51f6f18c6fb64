"""The ``sleap-rtc`` command line.

Each subcommand lives in the module that owns its work; this file only builds the
parser, applies the layered config, and turns errors into one-line messages with a
non-zero exit code. Heavy imports (aiortc, torch) happen inside the subcommands, so
``sleap-rtc --help`` stays instant.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from typing import Any, Callable

from . import __version__
from .config import ConfigError, format_settings, load_settings, settings_as_dict
from .errors import UserError

EPILOG = """\
Typical use:
  sleap-rtc worker                         start a worker (and an embedded coordinator if none is configured)
  sleap-rtc train --config centroid.yaml --session-string S       train remotely, as `sleap-nn train` would locally
  sleap-rtc track -i video.mp4 -m models/centroid --session-string S   predict remotely, as `sleap-nn track` would
  sleap-rtc client-train --session-string S --pkg-path labels.slp.training_job.zip   a package exported from SLEAP
  sleap-rtc demo                           train and predict remotely on a generated dataset, all on this machine

Settings come from flags > SLEAP_RTC_* environment variables > sleap-rtc.toml > defaults;
`sleap-rtc config show` prints the effective values and where each one came from.
"""


def _lazy(module: str, add: str, run: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any]]:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        getattr(importlib.import_module(module, __package__), add)(parser)

    def run_command(args: argparse.Namespace) -> Any:
        return getattr(importlib.import_module(module, __package__), run)(args)

    return add_arguments, run_command


# name -> (help, module, add_arguments function, run function)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "server": ("run the coordinator (signaling server)", ".coordinator.cli", "add_server_arguments", "serve"),
    "worker": ("run a worker that trains and predicts for clients in a room", ".worker.cli", "add_arguments", "run"),
    "train": ("train a model remotely from labels + a sleap-nn config, as `sleap-nn train` does locally", ".client.train_cli", "add_arguments", "run"),
    "track": ("predict (and track) remotely on a video or labels file, as `sleap-nn track` does locally", ".client.track_cli", "add_track_arguments", "run_track"),
    "predict": ("predict remotely with sleap-nn's newer `predict` pipeline; same options as track", ".client.track_cli", "add_predict_arguments", "run_predict"),
    "client-train": ("send a training package to a worker and fetch the trained model", ".client.cli", "add_train_arguments", "run_train"),
    "client-track": ("send an inference package to a worker and fetch the predictions", ".client.cli", "add_track_arguments", "run_track"),
    "admin": ("administer a coordinator: workers, jobs, drain, worker tokens, audit log", ".coordinator.admin_cli", "add_arguments", "run"),
    "demo": ("train and predict remotely on a small generated dataset, all on this machine", ".demo", "add_arguments", "run"),
    "doctor": ("check the network path: coordinator (and TLS), STUN, TURN per transport, a test link to a worker", ".client.doctor", "add_arguments", "run"),
}


#: Commands whose ``--config`` is sleap-nn's YAML, as in ``sleap-nn train --config``: the TOML file is ``--rtc-config`` there.
NN_CONFIG_COMMANDS = {"train"}


def _add_common(parser: argparse.ArgumentParser, *, nn_config: bool = False) -> None:
    flags = ["--rtc-config"] if nn_config else ["--config", "--rtc-config"]
    parser.add_argument(*flags, dest="config", metavar="PATH", help="sleap-rtc TOML config file (default: ./sleap-rtc.toml, then the user config dir)")
    parser.add_argument("--env", metavar="NAME", help="environment table to use (development, staging, production); default $SLEAP_RTC_ENV")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--tls-ca", metavar="PEM", help="CA certificate(s) to trust for a wss:// coordinator: a private CA or a self-signed certificate (default tls_ca / $SLEAP_RTC_TLS_CA, else the system store)")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Build the parser; only the subcommand named in ``argv`` imports its module."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    wanted = set(words[:2])
    parser = argparse.ArgumentParser(
        prog="sleap-rtc",
        description="Remote training and inference for SLEAP over WebRTC.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sleap-rtc-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name, (help_text, module, add, run) in COMMANDS.items():
        add_arguments, run_command = _lazy(module, add, run)
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        _add_common(p, nn_config=name in NN_CONFIG_COMMANDS)
        if name in wanted:
            add_arguments(p)
        p.set_defaults(func=run_command)

    room = sub.add_parser("room", help="create rooms and room secrets", description="Create rooms and room secrets.")
    room_sub = room.add_subparsers(dest="room_command", metavar="ACTION", required=True)
    for name, help_text, module, add, run in [
        ("create", "create a room on a coordinator and print its id and token (shown once)", ".coordinator.cli", "add_room_create_arguments", "run_room"),
        ("create-secret", "generate a room secret (PSK) for peer authentication", ".peer.secrets", "add_secret_arguments", "run_create_secret"),
    ]:
        add_arguments, run_command = _lazy(module, add, run)
        p = room_sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        _add_common(p)
        if name in wanted:
            add_arguments(p)
        p.set_defaults(func=run_command)

    config = sub.add_parser("config", help="inspect the effective configuration", description="Inspect the effective configuration.")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser("show", help="print every setting and where its value came from")
    _add_common(show)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_config_show)
    return parser


def _config_show(args: argparse.Namespace) -> int:
    import json

    settings = args.settings
    print(json.dumps(settings_as_dict(settings), indent=2) if args.json else format_settings(settings))
    return 0


#: Commands a person watches in a terminal: their progress display replaces INFO logs.
INTERACTIVE = {"train", "track", "predict", "client-train", "client-track", "demo", "room", "config", "doctor"}


def setup_logging(verbosity: int, *, interactive: bool = False) -> None:
    """Plain ``LEVEL name: message`` lines: journald adds its own timestamps.

    Services (server, worker) log state changes at INFO; interactive commands show
    warnings only unless ``-v`` is given.
    """
    base = logging.WARNING if interactive else logging.INFO
    level = max(logging.DEBUG, base - 10 * verbosity)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("aioice", "aiortc", "websockets", "asyncio"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) in NN_CONFIG_COMMANDS and not any(e.startswith("-") for e in extra):
        args.words = [*args.words, *extra]  # overrides after other flags, as sleap-nn allows
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose, interactive=args.command in INTERACTIVE)
    try:
        args.settings = load_settings(args.config, environment=args.env)
        if getattr(args, "tls_ca", None) or args.settings.get("tls_ca"):
            from .coordinator.tls import set_default_ca

            set_default_ca(args.tls_ca or args.settings["tls_ca"])
        result = args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except ConfigError as exc:
        print(f"sleap-rtc: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sleap-rtc: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"sleap-rtc: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
