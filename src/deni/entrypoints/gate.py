"""Who may call the gateway endpoints (Daraja's hooks, Africa's Talking's USSD callback), and
who is calling at all. Neither gateway signs its requests, so each endpoint has an unguessable
token in its path and, where the operator knows them, a list of source addresses (reference
part B.5 and Daraja's callback notes).

A request's address is its TCP peer, unless that peer is one of the operator's own reverse
proxies (DENI_TRUSTED_PROXIES): then X-Forwarded-For is read from the right, and the first
address that is not one of those proxies is the caller. Everything before it was written by
the caller and may say anything, so it is never read. Every limit and allowlist uses
`client_address`; nothing else reads request.client or the header.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from fastapi import Request

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FORWARDED_HOPS_MAX = 16  # a chain of proxies longer than this is not one we run
FORWARDED_HEADER_CHARS_MAX = 2_048
NETWORKS_CACHED = 8  # distinct settings strings in one process: a handful at most


def secret_matches(given: str, expected: str) -> bool:
    """Constant time; an unset secret (empty) matches nothing."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def secret_among(given: str, accepted: tuple[str, ...]) -> bool:
    """Constant time in each accepted secret (all are compared, whichever matches): a token
    being rotated is accepted in its old and its new form during the overlap."""
    matches = [secret_matches(given, expected) for expected in accepted]
    return any(matches)


def source_allowed(request: Request, allowed_csv: str) -> bool:
    """True when no addresses are configured, or the request comes from one of them (an
    address or a CIDR block; an entry that is neither matches only itself, as text)."""
    if not allowed_csv.strip():
        return True
    blocks, texts = _allowlist(allowed_csv)
    source = client_address(request)
    address = _parse(source)
    in_block = address is not None and _is_trusted(address, blocks)
    return in_block or source in texts


@functools.lru_cache(maxsize=NETWORKS_CACHED)
def _allowlist(csv: str) -> tuple[tuple[IpNetwork, ...], frozenset[str]]:
    blocks: list[IpNetwork] = []
    texts: set[str] = set()
    for entry in (part.strip() for part in csv.split(",")):
        if not entry:
            continue
        texts.add(entry)
        try:
            blocks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return tuple(blocks), frozenset(texts)


def client_address(request: Request) -> str:
    """The address of whoever sent this request (see the module's docstring)."""
    peer = request.client.host if request.client else ""
    deni = getattr(request.app.state, "deni", None)
    trusted = networks(deni.settings.trusted_proxies) if deni is not None else ()
    forwarded = request.headers.getlist("x-forwarded-for") if trusted else []
    return address_behind_proxies(peer, forwarded, trusted)


def address_behind_proxies(
    peer: str, forwarded_headers: list[str], trusted: tuple[IpNetwork, ...]
) -> str:
    """The peer, or, when the peer is a trusted proxy, the right-most X-Forwarded-For entry
    that is not; if the header names only trusted proxies (or none), the last of them."""
    caller = _parse(peer)
    if caller is None or not _is_trusted(caller, trusted):
        return _canonical(peer)
    joined = ",".join(forwarded_headers)[-FORWARDED_HEADER_CHARS_MAX:]
    hops = [hop.strip() for hop in joined.split(",")][-FORWARDED_HOPS_MAX:]
    for hop in reversed(hops):
        address = _parse(_without_port(hop))
        if address is None:
            break  # our proxy wrote something that is not an address: trust nothing further
        caller = address
        if not _is_trusted(address, trusted):
            break
    return str(caller)


@functools.lru_cache(maxsize=NETWORKS_CACHED)
def networks(csv: str) -> tuple[IpNetwork, ...]:
    """Addresses and CIDR blocks, comma-separated (the settings check them at start)."""
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in csv.split(",") if p.strip())


def _is_trusted(address: IpAddress, trusted: tuple[IpNetwork, ...]) -> bool:
    return any(address in network for network in trusted)


def _parse(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _without_port(hop: str) -> str:
    """Some proxies write "1.2.3.4:5678" or "[2001:db8::1]:5678"."""
    if hop.startswith("[") and "]" in hop:
        return hop[1 : hop.index("]")]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def _canonical(peer: str) -> str:
    address = _parse(peer)
    return str(address) if address is not None else peer
