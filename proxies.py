"""Behind a reverse proxy (Caddy, nginx, a tunnel): whom to believe about the client.

``TRUSTED_PROXIES`` is either a count of proxy hops (every request is believed: only
for an app no one reaches but through its proxies) or the proxies' addresses (the
``X-Forwarded-*`` headers are believed only on a request that comes from one of them,
and a chain of them is walked back from the right). Werkzeug's ``ProxyFix`` then sets
the client address, the scheme and the host from those headers, so the lockout, the
audit and ``WEBHOOK_ALLOWED_IPS`` see the real client, session cookies are ``Secure``
over https, and the Host check sees the public name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import MAX_PROXY_HOPS, Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """WSGI middleware: ProxyFix for as many hops as the request came through trusted proxies."""

    def __init__(self, app: WSGIApplication, trusted: tuple[str, ...]) -> None:
        self._app = app
        counted = len(trusted) == 1 and trusted[0].isdigit()
        self._count = int(trusted[0]) if counted else 0
        self._networks: tuple[Network, ...] = (
            () if counted else tuple(ipaddress.ip_network(net) for net in trusted)
        )
        self._fixes = {
            hops: ProxyFix(app, x_for=hops, x_proto=1, x_host=1, x_port=1)
            for hops in range(1, MAX_PROXY_HOPS + 1)
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        hops = self._count or self._hops(environ)
        target = self._fixes[hops] if hops else self._app
        return target(environ, start_response)

    def _hops(self, environ: WSGIEnvironment) -> int:
        """1 when the peer is a trusted proxy, plus each trusted proxy it names before it."""
        if not self._trusted(environ.get("REMOTE_ADDR")):
            return 0
        chain = [a.strip() for a in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        hops = 1
        while hops < min(len(chain), MAX_PROXY_HOPS) and self._trusted(chain[-hops]):
            hops += 1
        return hops

    def _trusted(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address((address or "").strip("[]"))
        except ValueError:
            return False
        return any(ip in net for net in self._networks)


def install(app: Flask, settings: Settings) -> None:
    """Believe ``X-Forwarded-For/-Proto/-Host/-Port`` from TRUSTED_PROXIES (none when unset)."""
    if settings.trusted_proxies:
        app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign]  # Flask's documented way to add WSGI middleware
