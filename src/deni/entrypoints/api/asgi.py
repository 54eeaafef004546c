"""The ASGI app that `deni serve` (or any ASGI server) runs: settings from the environment.

Logging is configured here, not only in `deni serve`: uvicorn's worker processes, and servers
started on `deni.entrypoints.api.asgi:app` directly, import this module and nothing else.
"""

from __future__ import annotations

import gc

from deni import i18n
from deni.bootstrap import bootstrap, configure_logging
from deni.config import Settings
from deni.entrypoints.api.app import create_app
from deni.entrypoints.dev_sandbox import with_sandbox

_settings = Settings()
configure_logging(level=_settings.log_level, json=_settings.log_json)
# DENI_SANDBOX=on (make run): the local Daraja sandbox starts first, in this process.
app = create_app(bootstrap(with_sandbox(_settings)))
i18n.load_all()
# Everything built so far (modules, the app, its routes and models) lives as long as the
# process: moved out of the collector's generations, full collections stop walking it on
# every request burst, which keeps their pauses out of the latency tail.
gc.freeze()
