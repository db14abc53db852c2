"""genjob/destinations.py: which hosts are non-public before any DNS lookup, and pinning a URL to
the addresses its host resolves to (refusing non-public ones)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from genjob.destinations import DestinationRefused, non_public_address, pin_to_addresses


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("169.254.169.254", "169.254.169.254"),  # cloud metadata
        ("10.0.3.7", "10.0.3.7"),
        ("[::1]", "::1"),
        ("::ffff:192.168.1.1", str(ipaddress.ip_address("::ffff:192.168.1.1"))),  # IPv4-mapped
        ("localhost", "localhost"),
        ("api.localhost", "localhost"),
        ("93.184.216.34", None),
        ("hooks.example.com", None),  # not resolved at submit
    ],
)
def test_non_public_addresses_are_named_without_a_lookup(host: str, refused: str | None) -> None:
    assert non_public_address(host) == refused


def test_a_name_resolving_to_a_private_address_is_refused_and_pinned_when_allowed(monkeypatch) -> None:
    """DNS answers cannot be made hostile here, so getaddrinfo is replaced: a public-looking name
    that resolves to the metadata endpoint."""

    def resolve(host: str, *_args: object, **_kwargs: object) -> list[tuple[object, ...]]:
        assert host == "images.example.com"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(DestinationRefused) as refused:
        pin_to_addresses("https://images.example.com/a.png", allow_private=False)
    assert refused.value.address == "169.254.169.254"
    (pinned,) = pin_to_addresses("https://images.example.com:8443/a.png", allow_private=True)
    assert str(pinned.url) == "https://169.254.169.254:8443/a.png"
    assert pinned.headers == {"Host": "images.example.com:8443"}
    assert pinned.extensions == {"sni_hostname": "images.example.com"}
