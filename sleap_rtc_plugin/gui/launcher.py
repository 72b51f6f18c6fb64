"""``sleap-rtc-label``: SLEAP's own GUI with the sleap_rtc plugins installed.

Mirrors ``sleap.gui.app.main`` (same arguments, same parser), then installs a qasync
event loop on SLEAP's QApplication and calls the plugin hooks once the menus exist.
``sleap.gui.app`` is imported before anything else on purpose: on Linux it may
re-execute the interpreter to fix LD_LIBRARY_PATH, and any code before that import
would run twice.
"""

import sleap.gui.app as sleap_app  # noqa: I001  (must stay first: may re-exec the process)

import logging
import os
import sys
from typing import Any, Iterable, Optional

logger = logging.getLogger(__name__)


def build_window(args: Any = None, *, labels: Any = None, plugins: Iterable[Any] = (), load_entrypoints: bool = True):
    """Create SLEAP's ``MainWindow`` from parsed ``sleap-label`` args and install plugins.

    Expects a ``QApplication`` to exist. Returns ``(window, host)``.
    """
    from .manager import PluginHost

    if args is None:
        args = sleap_app.create_sleap_label_parser().parse_args([])
    window = sleap_app.MainWindow(
        labels_path=args.labels_path, labels=labels, reset=args.reset, no_usage_data=args.no_usage_data
    )
    host = PluginHost(plugins, load_entrypoints=load_entrypoints)
    host.install(window)
    return window, host


def main(argv: Optional[list] = None) -> int:
    """Entry point: same arguments as ``sleap-label``."""
    logging.basicConfig(level=os.environ.get("SLEAP_RTC_LOG_LEVEL", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    parser = sleap_app.create_sleap_label_parser()
    parser.prog = "sleap-rtc-label"
    args = parser.parse_args(argv)

    from sleap.system_info import print_startup_banner

    print_startup_banner(verbose=args.verbose)
    print("Launching GUI with remote training (sleap-rtc)...")
    if args.nonnative:
        os.environ["USE_NON_NATIVE_FILE"] = "1"

    import sleap_io as sio
    from sleap.prefs import prefs

    if args.video_backend:
        prefs["default video backend"] = args.video_backend
        prefs.save()
    video_backend = args.video_backend or prefs["default video backend"]
    if video_backend:
        sio.set_default_video_plugin(video_backend)

    from .qt_async import install_event_loop

    app = sleap_app.create_app()
    loop = install_event_loop(app)
    window, _host = build_window(args)
    window.showMaximized()
    with loop:
        if args.profiling:
            import cProfile

            cProfile.runctx("loop.run_forever()", globals(), {"loop": loop})
        else:
            loop.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
