"""Where genjob's outbound HTTP may go: public addresses only, checked where the connection goes.

Two components fetch URLs a caller chose: the gateway POSTs webhooks and the worker GETs
allow-listed init images. Both refuse non-public destinations (loopback, private, link-local
with the cloud metadata endpoint 169.254.169.254, shared, reserved, multicast, unspecified)
unless an operator allowed them, and both connect to an address the check saw: the host is
resolved once and the request is aimed at the resolved address, keeping the name for the Host
header and the TLS server name, so no second lookup (DNS rebinding) can send it elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import httpx


def non_public_address(host: str) -> str | None:
    """The non-public address `host` names without a DNS lookup (an IP literal or `localhost`),
    else None. Request paths use this: they must not block on DNS."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return "localhost"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None
    return None if address.is_global else str(address)


class DestinationRefused(Exception):
    """The URL's host is, or resolves to, a non-public address."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


@dataclass(frozen=True)
class PinnedRequest:
    """A URL aimed at one resolved address, keeping the name for Host and TLS."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, Any]


def pin_to_addresses(url: str, allow_private: bool) -> list[PinnedRequest]:
    """Resolve the URL's host once and aim one request at each address it resolved to.

    The Host header and the TLS server name (certificate check) stay the original name.
    Raises DestinationRefused unless `allow_private`, and OSError when the name does not resolve."""
    parsed = httpx.URL(url)
    host = parsed.host
    literal = non_public_address(host)
    if literal and not allow_private:
        raise DestinationRefused(literal)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not allow_private:
        for address in addresses:
            if not address.is_global:
                raise DestinationRefused(str(address))
    headers = {"Host": parsed.netloc.decode("ascii")}
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return [PinnedRequest(parsed.copy_with(host=str(a)), headers, extensions) for a in addresses]
