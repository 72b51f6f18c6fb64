"""Hook specifications for extending SLEAP's main window.

SLEAP 1.6 has no plugin loader, so ``sleap-rtc-label`` starts SLEAP's own
``MainWindow`` and then calls these hooks. Any distribution can contribute by
declaring an entry point in the ``sleap_rtc`` group that names a module (or
object) carrying ``@hookimpl`` functions::

    [project.entry-points.sleap_rtc]
    myaddon = "my_package.sleap_plugin"

The model is pluggy's (as in pytest and napari): every implementation of a
hook is called, newest-registered first, unless the spec says ``firstresult``,
in which case the first non-``None`` answer wins. Hook implementations may
declare only the arguments they use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from qtpy.QtWidgets import QMenu, QWidget

PROJECT_NAME = "sleap_rtc"
ENTRY_POINT_GROUP = "sleap_rtc"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclass(frozen=True)
class DialogContribution:
    """A dialog a plugin offers to the host.

    ``factory(window)`` must build the dialog without showing it; the host (or a
    menu action) decides when to ``.open()`` it. ``key`` is how other code asks
    for it (``host.dialog("train_remotely")``), so keep it stable.
    """

    key: str
    title: str
    factory: Callable[[Any], "QWidget"]


@hookspec
def sleap_rtc_add_menu_actions(window: Any, menus: dict[str, "QMenu"]) -> None:
    """Add actions to SLEAP's menus, once, right after the main window built them.

    ``menus`` maps each top-level menu title as SLEAP shows it (``"File"``,
    ``"Predict"``, ...) to its ``QMenu``. Insert next to SLEAP's own actions with
    ``menu.insertAction(before, action)``; the window's ``_menu_actions`` dict
    (SLEAP's own registry, e.g. ``window._menu_actions["inference"]``) is the
    stable way to find them. Every implementation is called.
    """


@hookspec
def sleap_rtc_dialogs() -> list[DialogContribution]:
    """Contribute dialogs (a list of :class:`DialogContribution`).

    Results of all plugins are collected; a later duplicate ``key`` is an error
    so that two add-ons can never silently shadow each other.
    """
    raise NotImplementedError  # a specification: pluggy calls the implementations, never this


@hookspec(firstresult=True)
def sleap_rtc_default_connection(window: Any) -> Any | None:
    """Offer default connection settings (a ``ConnectionSpec``) for this window.

    First non-``None`` answer wins, so a site plugin (e.g. one a lab installs to
    point every user at its coordinator) can take precedence over the built-in
    defaults read from config and the remembered settings.
    """


@hookspec
def sleap_rtc_window_closing(window: Any) -> None:
    """The main window is closing: cancel background work, release ports."""
