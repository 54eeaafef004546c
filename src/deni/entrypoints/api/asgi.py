"""The ASGI app that `deni serve` (or any ASGI server) runs: settings from the environment."""

from __future__ import annotations

from deni.bootstrap import bootstrap
from deni.config import Settings
from deni.entrypoints.api.app import create_app
from deni.entrypoints.dev_sandbox import with_sandbox

# DENI_SANDBOX=on (make run): the local Daraja sandbox starts first, in this process.
app = create_app(bootstrap(with_sandbox(Settings())))
