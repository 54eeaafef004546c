"""Safaricom Daraja (M-PESA): Deni's own thin client, its payload models and callback parsers.

- client.py: `DarajaClient` and `DarajaConfig` (the synchronous API calls).
- models.py: request bodies and synchronous answers, with Daraja's field names.
- callbacks.py: lenient parsers for what Daraja POSTs back to Deni.
- errors.py: the typed exceptions.
- tokens.py: the deployment-wide OAuth token (`TokenStore`).
- credentials.py: SecurityCredential and STK password.
- money.py: the one cents <-> shillings conversion.
"""

from deni.adapters.daraja.callbacks import MalformedCallback
from deni.adapters.daraja.client import Callback, DarajaClient, DarajaConfig
from deni.adapters.daraja.errors import DarajaError, DarajaUnavailable
from deni.adapters.daraja.tokens import InMemoryTokenStore, TokenStore

__all__ = [
    "Callback",
    "DarajaClient",
    "DarajaConfig",
    "DarajaError",
    "DarajaUnavailable",
    "InMemoryTokenStore",
    "MalformedCallback",
    "TokenStore",
]
