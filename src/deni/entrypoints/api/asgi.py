"""The ASGI app that `deni serve` (or any ASGI server) runs: settings from the environment."""

from __future__ import annotations

from deni.bootstrap import bootstrap
from deni.entrypoints.api.app import create_app

app = create_app(bootstrap())
