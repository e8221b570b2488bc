"""Where a webhook may be sent: the SSRF rules, one definition for registration and delivery.

An endpoint's URL must be ``https`` (``WEBHOOKS_ALLOW_HTTP`` lets tests use ``http``) and every
address its host resolves to must be public: not loopback, private, link-local (the cloud metadata
service at 169.254.169.254), multicast, reserved, unspecified, shared (100.64/10) or otherwise not
global, in IPv4 or IPv6 (an IPv4-mapped IPv6 address is judged as its IPv4 address).
``WEBHOOKS_ALLOW_PRIVATE_URLS`` lifts the address rule, for tests with a local receiver.

The name is resolved once per attempt and the delivery connects to the very address that passed
(:class:`Destination`), sending the name as ``Host`` and as TLS SNI, so a name that resolves to a
public address at the check and to 127.0.0.1 at the connect (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.utils.translation import gettext, gettext_noop


class UnsafeUrl(Exception):
    """A URL webhooks may not be sent to; the message says why.

    ``str()`` is the English message, which a delivery's log stores; :meth:`translated` is the same
    in the active language, for the caller registering the URL."""

    def __init__(self, template: str, **params: object) -> None:
        self.template, self.params = template, params
        super().__init__(template % params)

    def translated(self) -> str:
        return gettext(self.template) % self.params


@dataclass(frozen=True)
class Destination:
    """A checked URL and the address to connect to for it."""

    url: str
    host: str
    address: str
    port: int

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address (what the client connects to)."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if ":" in self.address else self.address
        return parts._replace(netloc=f"{host}:{self.port}").geturl()

    @property
    def host_header(self) -> str:
        parts = urlsplit(self.url)
        default = 443 if parts.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


def address_is_public(text: str) -> bool:
    address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def url_checked(url: str, *, allow_http: bool, allow_private: bool) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``url``, or :class:`UnsafeUrl` for a scheme or form not allowed."""
    parts = urlsplit(url)
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        raise UnsafeUrl(gettext_noop("The URL must use https."))
    if not parts.hostname:
        raise UnsafeUrl(gettext_noop("The URL has no host."))
    if parts.username or parts.password:
        raise UnsafeUrl(gettext_noop("The URL may not carry a user name or password."))
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl(gettext_noop("The URL's port is not a number from 1 to 65535.")) from exc
    return parts.scheme, parts.hostname, port


def destination_resolve(url: str, *, allow_http: bool, allow_private: bool) -> Destination:
    """Resolve ``url``'s host once and return where to connect; :class:`UnsafeUrl` if the URL is not
    allowed, its host does not resolve, or any address it resolves to is not public."""
    _, host, port = url_checked(url, allow_http=allow_http, allow_private=allow_private)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(gettext_noop("The host %(host)s does not resolve."), host=host) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeUrl(gettext_noop("The host %(host)s does not resolve."), host=host)
    if not allow_private:
        refused = [address for address in addresses if not address_is_public(address)]
        if refused:
            raise UnsafeUrl(
                gettext_noop("The host %(host)s resolves to %(address)s, which is not a public address."),
                host=host,
                address=refused[0],
            )
    return Destination(url=url, host=host, address=addresses[0], port=port)
