"""Wilson's dashboard: a local web app to review and label captured LLM calls.

Start it with ``wilson dashboard``; the app itself is built by
:func:`wilson_dashboard.app.create_app` (imported only when the command runs).
"""

from importlib.metadata import version as _version

__version__ = _version("wilson-dashboard")  # one source: the distribution's metadata (pyproject.toml)
