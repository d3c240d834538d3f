"""Where webhooks may point: SSRF protection.

A webhook makes cdp's workers send requests to a URL a token holder chose, so outside
development the URL must be ``https://`` and every address its host resolves to must be a
public (global) one: no loopback, private (10/8, 172.16/12, 192.168/16), link-local
(169.254/16: cloud metadata endpoints), shared (100.64/10), multicast or reserved address, in
IPv4 or IPv6. An IPv6 address that stands for an IPv4 one (IPv4-mapped or -compatible, 6to4
``2002::/16``, NAT64 ``64:ff9b::/96``) is checked as that IPv4 address; the local-use NAT64
prefix ``64:ff9b:1::/48`` is refused. The URL is checked when the webhook is
created and again before every attempt; the sender then connects to the very address it
checked (``segments.activation.sender``), so a DNS answer that changes between the check and the
connection (rebinding) cannot point it inside. Redirects are never followed. Credentials in the
URL are refused (they would be stored in clear).

``CDP_SEGMENTS["WEBHOOK_ALLOW_HTTP"]`` / ``["WEBHOOK_ALLOW_PRIVATE"]`` (default: ``DEBUG``) lift
these for local development and tests (``http://127.0.0.1:<port>``).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from cdp.api.errors import InvalidInput
from segments.activation.config import activation_config

ATTR = "url"


class AddressRefused(Exception):
    """The URL's host is (or resolves to) an address webhooks may not reach; no value inside."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line


def webhook_url_parse(url: str) -> Target:
    """The parts of an acceptable URL, or ``InvalidInput``. Does not resolve the host."""
    config = activation_config()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("url is not a valid URL.", code="invalid_url", attr=ATTR) from None
    allowed = ("https", "http") if config.webhook_allow_http else ("https",)
    if parts.scheme not in allowed:
        raise InvalidInput("url must use https.", code="https_required", attr=ATTR)
    if not parts.hostname:
        raise InvalidInput("url needs a host.", code="invalid_url", attr=ATTR)
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            "url must not carry credentials (authenticate with the signature).",
            code="invalid_url",
            attr=ATTR,
        )
    if parts.fragment:
        raise InvalidInput("url must not have a fragment.", code="invalid_url", attr=ATTR)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if parts.scheme == "https" else 80
    return Target(scheme=parts.scheme, host=parts.hostname, port=port or default_port, path=path)


# IPv6 ranges that carry an IPv4 address in their low 32 bits: a gateway or the host itself
# forwards to that IPv4 address, so it is the one checked. ``ipaddress`` calls most of them
# global (Python 3.11): 64:ff9b::a9fe:a9fe would reach 169.254.169.254.
_IPV4_IN_LOW_BITS = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, the well-known prefix (RFC 6052)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT, RFC 2765)
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated)
)
# Refused outright: where the IPv4 address sits depends on the operator's prefix length.
_REFUSED_V6 = (ipaddress.IPv6Network("64:ff9b:1::/48"),)  # local-use NAT64 (RFC 8215)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped, 6to4 (2002::/16), NAT64 and the
    other ranges of ``_IPV4_IN_LOW_BITS``; None for a native IPv6 address."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in network for network in _IPV4_IN_LOW_BITS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in _REFUSED_V6):
            return False
        ip = _embedded_ipv4(ip) or ip
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def target_addresses(target: Target) -> list[str]:
    """The addresses to connect to, checked: ``AddressRefused`` when any of them is not
    allowed (unless private addresses are allowed), ``OSError`` when the host does not
    resolve."""
    infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not activation_config().webhook_allow_private and not all(
        address_allowed(a) for a in addresses
    ):
        raise AddressRefused("the webhook's host resolves to a non-public address")
    return addresses


def webhook_url_check(url: str) -> Target:
    """At creation: ``webhook_url_parse`` plus the address check when the host resolves (a name
    that does not resolve yet is accepted; each attempt checks again)."""
    target = webhook_url_parse(url)
    try:
        target_addresses(target)
    except AddressRefused:
        raise InvalidInput(
            "url must point to a public address (not loopback, private or link-local).",
            code="address_not_allowed",
            attr=ATTR,
        ) from None
    except OSError:
        pass
    return target
