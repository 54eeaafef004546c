"""Who may call the gateway endpoints (Daraja's hooks, Africa's Talking's USSD callback).
Neither gateway signs its requests, so each endpoint has an unguessable token in its path and,
where the operator knows them, a list of source addresses (reference part B.5 and Daraja's
callback notes)."""

from __future__ import annotations

import hmac

from fastapi import Request


def secret_matches(given: str, expected: str) -> bool:
    """Constant time; an unset secret (empty) matches nothing."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def source_allowed(request: Request, allowed_csv: str) -> bool:
    """True when no addresses are configured, or the request comes from one of them."""
    allowed = {ip.strip() for ip in allowed_csv.split(",") if ip.strip()}
    source = request.client.host if request.client else ""
    return not allowed or source in allowed
