"""Whether a webhook receiver may be called: an ``http(s)`` URL whose host resolves only to
public addresses (unless ``AER_WEBHOOK_ALLOW_PRIVATE``).

The host is resolved and every address checked, at submission and again right before each
delivery, which then connects to an address it has just checked (so a DNS answer that changes
between the check and the connection, "DNS rebinding", cannot send it inside the network).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from api.store.errors import StoreError

SCHEMES = ("http", "https")
MAX_URL = 2000


class ReceiverNotAllowedError(StoreError, ValueError):
    """A webhook URL is malformed, does not resolve, or points at a private address."""

    code = "callback_url_not_allowed"
    status = 422


def _blocked(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def split_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an ``http(s)`` URL; raises :class:`ReceiverNotAllowedError`."""
    if len(url) > MAX_URL:
        raise ReceiverNotAllowedError(f"the URL is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ReceiverNotAllowedError(f"not a valid URL: {exc}") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ReceiverNotAllowedError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ReceiverNotAllowedError("must not carry credentials (sign with the secret)")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve_receiver(url: str, *, allow_private: bool) -> tuple[str, str, int, str]:
    """``(scheme, host, port, address)``: the URL's parts and one checked address to connect to.

    Raises:
        ReceiverNotAllowedError: malformed, unresolvable, or any address it resolves to is
            private, loopback, link-local, multicast or reserved (and ``allow_private`` is off).
    """
    scheme, host, port = split_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:  # UnicodeError (IDNA) and NUL bytes included
        raise ReceiverNotAllowedError(f"the host {host!r} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise ReceiverNotAllowedError(f"the host {host!r} does not resolve")
    if not allow_private and any(_blocked(address) for address in addresses):
        raise ReceiverNotAllowedError(
            f"the host {host!r} resolves to a private, loopback or link-local address "
            "(AER_WEBHOOK_ALLOW_PRIVATE allows it)"
        )
    return scheme, host, port, addresses[0]


def check_receiver(url: str, *, allow_private: bool) -> str:
    """``url`` if :func:`resolve_receiver` accepts it (the submission-time check)."""
    resolve_receiver(url, allow_private=allow_private)
    return url
