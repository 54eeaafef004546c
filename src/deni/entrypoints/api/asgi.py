"""The ASGI app that `deni serve` (or any ASGI server) runs: settings from the environment.

Logging is configured here, not only in `deni serve`: uvicorn's worker processes, and servers
started on `deni.entrypoints.api.asgi:app` directly, import this module and nothing else.
"""

from __future__ import annotations

from deni.adapters.observability import configure_logging
from deni.bootstrap import bootstrap
from deni.config import Settings
from deni.entrypoints.api.app import create_app
from deni.entrypoints.dev_sandbox import with_sandbox

_settings = Settings()
configure_logging(level=_settings.log_level, json=_settings.log_json)
# DENI_SANDBOX=on (make run): the local Daraja sandbox starts first, in this process.
app = create_app(bootstrap(with_sandbox(_settings)))
