"""The dashboard: server-rendered pages over the store, the registry, the monitor and the loop."""

from fedloop.ui.app import DASHBOARD_PREFIX, create_dashboard, plotly_js_file
from fedloop.ui.sessions import KeyAccess, Sessions, Viewer

__all__ = [
    "DASHBOARD_PREFIX",
    "KeyAccess",
    "Sessions",
    "Viewer",
    "create_dashboard",
    "plotly_js_file",
]
