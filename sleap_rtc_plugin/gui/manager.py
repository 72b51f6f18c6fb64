"""The plugin manager: discovery, registration and calling hooks on a window."""

from __future__ import annotations

import logging
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .hookspecs import DialogContribution

logger = logging.getLogger(__name__)


class PluginHost:
    """Owns a pluggy manager and wires its hooks into one SLEAP main window.

    Kept as a small object (rather than module globals) so tests can build a host
    with a programmatically registered plugin and no entry points at all.
    """

    def __init__(self, plugins: Iterable[Any] = (), *, load_entrypoints: bool = True):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        if load_entrypoints:
            count = self.pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
            logger.info("loaded %d plugin(s) from entry point group %r", count, hookspecs.ENTRY_POINT_GROUP)
        for plugin in plugins:
            if not self.pm.is_registered(plugin):
                self.pm.register(plugin)
        self._dialogs: dict[str, DialogContribution] | None = None

    @property
    def hook(self):
        return self.pm.hook

    def plugin_names(self) -> list[str]:
        return [name for name, _ in self.pm.list_name_plugin()]

    def dialogs(self) -> dict[str, DialogContribution]:
        """All contributed dialogs by key (computed once)."""
        if self._dialogs is None:
            found: dict[str, DialogContribution] = {}
            for contributions in self.pm.hook.sleap_rtc_dialogs():
                for item in contributions or ():
                    if item.key in found:
                        raise ValueError(f"two plugins contribute a dialog named {item.key!r}; rename one")
                    found[item.key] = item
            self._dialogs = found
        return self._dialogs

    def make_dialog(self, key: str, window: Any):
        """Build (not show) the dialog registered under ``key`` for ``window``."""
        try:
            contribution = self.dialogs()[key]
        except KeyError:
            raise KeyError(f"no plugin contributes a dialog named {key!r}; installed: {sorted(self.dialogs())}") from None
        return contribution.factory(window)

    def install(self, window: Any) -> None:
        """Call the menu hook on a freshly built SLEAP ``MainWindow``, exactly once."""
        if getattr(window, "_sleap_rtc_host", None) is not None:
            return
        window._sleap_rtc_host = self
        self.hook.sleap_rtc_add_menu_actions(window=window, menus=window_menus(window))
        window._sleap_rtc_close_watcher = _close_watcher(self, window)
        logger.info("plugins installed into main window: %s", ", ".join(self.plugin_names()))


def window_menus(window: Any) -> dict[str, Any]:
    """Top-level menus of a ``QMainWindow`` by their shown title."""
    menus = {}
    for action in window.menuBar().actions():
        menu = action.menu()
        if menu is not None:
            menus[action.text().replace("&", "")] = menu
    return menus


def host_of(window: Any) -> PluginHost | None:
    return getattr(window, "_sleap_rtc_host", None)


def _close_watcher(host: PluginHost, window: Any):
    """Call ``sleap_rtc_window_closing`` when the window gets its close event."""
    from qtpy.QtCore import QEvent, QObject

    class CloseWatcher(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 (Qt name)
            if obj is window and event.type() == QEvent.Close:
                host.hook.sleap_rtc_window_closing(window=window)
            return False

    watcher = CloseWatcher(window)
    window.installEventFilter(watcher)
    return watcher
