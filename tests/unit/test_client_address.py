"""Whose address a request is: X-Forwarded-For is believed only from configured proxies, read
from the right, and never further than the first address that is not one of them."""

from __future__ import annotations

import pytest

from deni.config import Settings
from deni.entrypoints.gate import address_behind_proxies, networks

PROXIES = networks("10.0.0.0/8, 2001:db8::1")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # No proxy configured in front of this peer: the header is the caller's own words.
        ("203.0.113.9", ["1.2.3.4"], "203.0.113.9"),
        ("203.0.113.9", [], "203.0.113.9"),
        # Through our proxy: the address it appended, not what the caller wrote before it.
        ("10.0.0.5", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
        ("10.0.0.5", ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),
        # Two of our proxies in a row: skip both.
        ("10.0.0.5", ["6.6.6.6, 198.51.100.7, 10.1.1.1"], "198.51.100.7"),
        # Our proxy with no header, or naming only proxies: the last proxy is the caller.
        ("10.0.0.5", [], "10.0.0.5"),
        ("10.0.0.5", ["10.2.2.2"], "10.2.2.2"),
        # Garbage where our proxy writes: trust nothing further left.
        ("10.0.0.5", ["198.51.100.7, not-an-ip"], "10.0.0.5"),
        # Ports some proxies add; IPv6 and IPv4-mapped forms.
        ("10.0.0.5", ["198.51.100.7:4711"], "198.51.100.7"),
        ("10.0.0.5", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("2001:db8::1", ["2001:db8::9"], "2001:db8::9"),
        ("::ffff:10.0.0.5", ["198.51.100.7"], "198.51.100.7"),
        ("testclient", ["198.51.100.7"], "testclient"),
    ],
)
def test_the_caller_is_found_behind_trusted_proxies_only(
    peer: str, forwarded: list[str], expected: str
) -> None:
    assert address_behind_proxies(peer, forwarded, PROXIES) == expected


def test_with_no_trusted_proxies_the_header_is_never_read() -> None:
    assert address_behind_proxies("127.0.0.1", ["1.2.3.4"], ()) == "127.0.0.1"


def test_a_long_forged_header_costs_a_bounded_walk() -> None:
    forged = ", ".join(["10.9.9.9"] * 10_000)
    assert address_behind_proxies("10.0.0.5", [forged], PROXIES) == "10.9.9.9"


def test_trusted_proxies_are_checked_when_the_settings_load() -> None:
    assert Settings(trusted_proxies="10.0.0.0/8,192.0.2.1").trusted_proxies
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6"):
        Settings(trusted_proxies="proxy.example.com")


def test_deni_serve_keeps_uvicorn_from_believing_forwarded_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 by default and rewrites the client
    address before Deni sees it; `deni serve` turns that off and reads the header itself."""
    import uvicorn
    from typer.testing import CliRunner

    from deni.entrypoints import cli

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(cli.app, ["serve", "--port", "8765"])
    assert result.exit_code == 0, result.output
    assert seen["proxy_headers"] is False
    assert seen["forwarded_allow_ips"] == ""
