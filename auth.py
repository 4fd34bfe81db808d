"""Who may use the app: the login URL, the login form, bearer tokens, and the lockout.

Nobody gets a session, or anything but the login page and ``/api/v1/health``,
without showing a secret:

* At start the app prints a login URL carrying the API token
  (``/login?token=...``), the way Jupyter does. Opening it exchanges the token
  for a session cookie (HttpOnly, SameSite=Strict, Secure over https) and
  redirects to a URL without the token.
* The login form takes the same token, or ``DASHBOARD_PASSWORD`` if one is set.
* Scripts send ``Authorization: Bearer <API_TOKEN>`` on every call.

A session is bound to the secrets in force: a new API token or password ends
every session. A session cookie is good for ``SESSION_HOURS`` from sign-in (Flask checks its
signature's age), and signing out revokes it for good: its id is kept in the journal until the
cookie would have expired anyway, so a copy of it (a shared machine, a backup) is refused too,
also after a restart. Failed secrets (login, bearer, webhook) are counted per client
address (an IPv6 address's /64) and in total in moving windows (``rate_window``: an address
is forgotten a day after its last failure, and past 10,000 addresses the longest quiet one is);
past a window's allowance every attempt, right or wrong, answers 429 with ``Retry-After`` until
the window has room again, and the windows grow from a minute to a day. The webhook's failures
count against their address only (``PUBLIC_KINDS``): it is on the internet, and strangers'
guesses there must not lock the trader's sign-in, scripts and TradingView's alerts out. A
secret another site's page made the browser send (an ``<img>`` of ``/login?token=``, a form
posted to ``/login`` or the webhook: ``Sec-Fetch-Site`` cross-site or same-site, or a foreign
``Origin``) is refused with 403 unread and uncounted (``cross_site_refusal``): any page the
trader opens could otherwise lock the trader's own address (127.0.0.1: the scripts' bearer
token too) out. Each failure and each refused attempt is audited, a stranger's up to a rate
(``audit_limit``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from itsdangerous import BadSignature

import webhook
from audit_limit import StrangerAudit
from journal import JournalError
from rate_window import Clock, MovingWindows, Rule, whole_seconds

log = logging.getLogger(__name__)

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
PER_CLIENT_RULES = ((5, MINUTE), (15, HOUR), (40, DAY))  # failed secrets from one address
OVERALL_RULES = ((20, MINUTE), (60, HOUR), (150, DAY))  # failed secrets from everywhere
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OTHER_SITES = frozenset({"cross-site", "same-site"})  # Sec-Fetch-Site of another site's request
HEALTH_PATH = "/api/v1/health"
WEBHOOK_PATH = "/api/v1/webhook"
LOGIN_ASSETS = frozenset({"/static/style.css", "/static/favicon.svg"})  # what the login page loads
PUBLIC_KINDS = frozenset({"webhook"})  # failures kept out of the overall windows
SESSION_ENDED = (
    "Your dashboard session has ended (signed out, expired, or a new secret): sign in again"
)
SESSION_HOURS = 24  # a sign-in lasts a trading day (Flask's default was 31 days)
WEBHOOK_SIGNED = "webhook_signed"  # g.auth once a webhook call showed the right secret
SIGNED_KINDS = frozenset({"browser", "token", WEBHOOK_SIGNED})  # g.auth: showed a valid secret
REVOKED_FLAG = "revoked_sessions"  # journal flag: {session id: when its cookie expires anyway}


class LoginGuard:
    """Counts failed secrets per client and in total; says how long a client must wait."""

    def __init__(
        self,
        per_client: Sequence[Rule] = PER_CLIENT_RULES,
        overall: Sequence[Rule] = OVERALL_RULES,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self._per_client = MovingWindows(per_client, monotonic=monotonic)
        self._overall = MovingWindows(overall, monotonic=monotonic)
        self._monotonic = monotonic
        # no window can be full once its length has passed since the last failure: then every
        # request (each API call checks) skips the look-ups
        self._span = max(seconds for _, seconds in (*per_client, *overall))
        self._last_failure = -math.inf

    def wait_seconds(self, client: str, overall: bool = True) -> int:
        """0 when ``client`` may try a secret now, else the whole seconds until it may; with
        ``overall`` False only its own failures count (not everyone's)."""
        if self._monotonic() - self._last_failure > self._span:
            return 0
        wait = self._per_client.wait(client_key(client))
        if overall:
            wait = max(wait, self._overall.wait(""))
        return whole_seconds(wait)

    def failed(self, client: str, overall: bool = True) -> None:
        """Count one failed secret from ``client`` (and in the total, with ``overall``)."""
        self._last_failure = self._monotonic()
        self._per_client.hit(client_key(client))
        if overall:
            self._overall.hit("")

    def clients(self) -> int:
        """Addresses (IPv6: /64 networks) whose failures are remembered now."""
        return self._per_client.keys()


def client_key(client: str) -> str:
    """Whom failures are counted against: an IPv4 address, or an IPv6 address's /64 (one
    host holds a whole /64 and may take a new address for every attempt)."""
    try:
        address = ipaddress.ip_address(client.strip("[]"))
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure whenever the request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request and request.is_secure) or super().get_cookie_secure(app)


def init_auth(app: Flask, api_token: str, password: str | None) -> None:
    """Install the login views, the session rules and the per-request check on ``app``."""
    if not api_token.strip() or not app.config["SECRET_KEY"].strip():
        raise ValueError("an empty API token or secret key would let anyone in")
    app.session_interface = _SessionInterface()
    app.permanent_session_lifetime = timedelta(hours=SESSION_HOURS)  # the cookie's max age
    app.extensions["revoked_sessions"] = RevokedSessions()
    app.extensions["api_token"] = api_token
    app.extensions["login_guard"] = LoginGuard()
    app.extensions["stranger_audit"] = StrangerAudit()
    app.extensions["session_mark"] = hmac.new(
        app.config["SECRET_KEY"].encode(), f"{api_token}\0{password or ''}".encode(), hashlib.sha256
    ).hexdigest()[:32]
    app.before_request(authenticate)
    app.add_url_rule("/login", "login", login, methods=["GET", "POST"])
    app.add_url_rule("/logout", "logout", logout, methods=["POST"])


def authenticate() -> ResponseReturnValue | None:
    """Let the request through (None) or answer it: 401, 429, or a redirect to the login page."""
    path = request.path
    if path in ("/login", HEALTH_PATH) or path in LOGIN_ASSETS:
        return None
    if path == WEBHOOK_PATH or path.startswith(WEBHOOK_PATH + "/"):
        g.auth = "webhook"  # the webhook checks its own secret (and reports failures here)
        return None
    header = request.headers.get("Authorization")
    if header is not None:
        return _bearer(header)
    if session_valid():
        g.auth = "browser"
        if request.method not in SAFE_METHODS:
            from security import csrf

            csrf.protect()
        return None
    if path.startswith("/api/") or request.method not in SAFE_METHODS:
        return _unauthorized(
            "sign in to the dashboard, or send 'Authorization: Bearer <API_TOKEN>'"
        )
    return redirect(url_for("login", next=_next_target(request.full_path)))


def session_valid() -> bool:
    """The browser showed a secret that is still in force."""
    mark, sid = session.get("auth"), session.get("sid")
    return (
        isinstance(mark, str)
        and isinstance(sid, str)
        and hmac.compare_digest(mark, current_app.extensions["session_mark"])
        and not current_app.extensions["revoked_sessions"].revoked(sid)
    )


def session_ends_at() -> float:
    """When this request's session cookie stops being accepted (epoch seconds): its signature's
    time plus the lifetime Flask checks it against; 0 when there is no valid cookie."""
    app = current_app
    interface = app.session_interface
    serializer = (
        interface.get_signing_serializer(app)
        if isinstance(interface, SecureCookieSessionInterface)
        else None
    )
    cookie = request.cookies.get(interface.get_cookie_name(app))
    if serializer is None or not cookie:
        return 0.0
    lifetime = int(app.permanent_session_lifetime.total_seconds())  # as Flask passes it
    try:
        _, signed = serializer.loads(cookie, max_age=lifetime, return_timestamp=True)
    except BadSignature:
        return 0.0
    # itsdangerous counts whole seconds: the cookie is refused once int(now) - signed > lifetime
    return float(signed.timestamp()) + lifetime + 1


def refused_attempt(kind: str) -> tuple[Response, int] | None:
    """A 429 answer when this client is locked out (audited), else None."""
    wait = current_app.extensions["login_guard"].wait_seconds(_client(), kind not in PUBLIC_KINDS)
    if not wait:
        return None
    audit(kind, f"locked_out: retry in {wait} s")
    response, status = _error(
        429,
        "too_many_attempts",
        f"too many failed secrets from this address: try again in {wait} s",
    )
    response.headers["Retry-After"] = str(wait)
    return response, status


def cross_site_refusal(kind: str) -> tuple[Response, int] | None:
    """A 403 (audited, not counted as a failed secret) for a request another site's page made
    the browser send; None for the rest (same-origin, typed or opened links, scripts, proxies).

    Browsers say so in ``Sec-Fetch-Site``; older ones in ``Origin`` (on POSTs) only. An
    ``Origin`` of ``null`` says nothing: the login page's own form sends it (no-referrer)."""
    site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    origin = request.headers.get("Origin", "null")
    if site not in OTHER_SITES and (
        origin == "null" or _origin_host(origin) == request.host.lower()
    ):
        return None
    audit(kind, f"refused: sent by another site's page ({(site or origin)[:200]!r})")
    log.warning("🚫 %s attempt sent by another site's page from %s: refused", kind, _client())
    return _error(
        403,
        "cross_site",
        "another site's page sent this request: secrets are taken only from this dashboard's "
        "own pages, the printed sign-in link and non-browser clients",
    )


def _origin_host(origin: str) -> str | None:
    """The host (and port) an Origin header names, lower case; None for one that is no URL."""
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:  # "http://[": an unclosed IPv6 host
        return None


def secret_failed(kind: str, counted: bool = True) -> None:
    """Count (towards the lockout, unless not ``counted``) and audit one wrong secret (the
    secret itself is never logged)."""
    if counted:
        current_app.extensions["login_guard"].failed(_client(), kind not in PUBLIC_KINDS)
    audit(kind, "unauthorized: wrong secret")
    log.warning("🚫 wrong %s secret from %s", kind, _client())


def audit(kind: str, outcome: str) -> None:
    """One audit row for an authentication event; a stranger's refusals within
    ``audit_limit``'s rates (past them counted, and told in the next row written)."""
    g.audited = True
    services = current_app.extensions.get("trading")
    journal = getattr(services, "journal", None)
    if journal is None:
        return
    told = audited_outcome(outcome)
    if told is None:
        return
    path = webhook.redact(request.path)  # a /webhook/<secret> URL never reaches the journal
    journal.audit(kind, _client(), {"method": request.method, "path": path}, None, told)


def audited_outcome(outcome: str) -> str | None:
    """The outcome to audit for this request: as it is for a request that showed a valid
    secret; a stranger's within ``audit_limit``'s rates (None: left out, and counted), the
    first row after rows were left out saying how many."""
    if g.get("auth") in SIGNED_KINDS:
        return outcome
    left_out = current_app.extensions["stranger_audit"].admit(client_key(_client()))
    if left_out is None:
        return None
    if left_out:
        return f"{outcome} (+{left_out} refusals before it left out of the audit: over its rate)"
    return outcome


def _bearer(header: str) -> tuple[Response, int] | None:
    refused = refused_attempt("bearer")
    if refused is not None:
        return refused
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and _is_api_token(token.strip()):
        g.auth = "token"
        return None
    secret_failed("bearer")
    return _unauthorized("wrong bearer token")


def login() -> ResponseReturnValue:
    """GET shows the form (or takes ``?token=``); POST takes the form's secret."""
    given = request.form.get("secret") if request.method == "POST" else request.args.get("token")
    if request.method == "GET" and given is None:
        if session_valid():
            return redirect(_after_login())
        # the dashboard sends a page whose session ended here (signed out elsewhere, expired)
        return _login_page(SESSION_ENDED if request.args.get("ended") else None)
    if cross_site_refusal("login") is not None:
        return _login_page(
            "This sign-in came from another site's page: open the printed sign-in link "
            "or type the secret here",
            403,
        )
    refused = refused_attempt("login")
    if refused is not None:
        wait = refused[0].headers["Retry-After"]
        page = _login_page(f"Too many failed attempts: try again in {wait} s", 429)
        page.headers["Retry-After"] = wait
        return page
    if given and _secret_matches(given):
        session.clear()
        session["auth"] = current_app.extensions["session_mark"]
        session["sid"] = secrets.token_hex(16)
        g.auth = "browser"  # signed in from now on (its audit row is never limited)
        audit("login", "signed_in")
        log.info("🔓 dashboard sign-in from %s", _client())
        return redirect(_after_login())
    secret_failed("login")
    return _login_page("Wrong token or password", 401)


def logout() -> ResponseReturnValue:
    """End the session (POST with the page's CSRF token); a copy of its cookie is refused."""
    sid = session.get("sid")
    if isinstance(sid, str):
        current_app.extensions["revoked_sessions"].revoke(sid)
    session.clear()
    return redirect(url_for("login"))


def _secret_matches(given: str) -> bool:
    password = current_app.extensions["trading"].settings.dashboard_password
    password_ok = bool(password) and hmac.compare_digest(given.encode(), password.encode())
    return _is_api_token(given) or password_ok


def _is_api_token(given: str) -> bool:
    """``given`` is the API token; nothing is when it is empty (never in force: refused at
    the start, create_app)."""
    expected = current_app.extensions["api_token"]
    return bool(given and expected) and hmac.compare_digest(given.encode(), expected.encode())


def _login_page(error: str | None = None, status: int = 200) -> Response:
    """The sign-in page; its URL may carry the token (a refused sign-in link), so it sends no
    Referer, not even to the app (a proxy's access log would keep it)."""
    password = bool(current_app.extensions["trading"].settings.dashboard_password)
    page = render_template(
        "login.html", error=error, password=password, next=_next_target(request.args.get("next"))
    )
    return Response(page, status, headers={"Referrer-Policy": "no-referrer"})


def _after_login() -> str:
    return _next_target(request.args.get("next") or request.form.get("next"))


def _next_target(target: str | None) -> str:
    """A path on this site to go to after signing in ("/" for anything else)."""
    if not target:
        return "/"
    try:
        parts = urlsplit(target)
    except ValueError:  # not a URL at all ("//[": an unclosed IPv6 host)
        return "/"
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or parts.path == "/login"
    ):
        return "/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _client() -> str:
    return request.remote_addr or "unknown"


def _unauthorized(message: str) -> tuple[Response, int]:
    return _error(401, "unauthorized", message)


def _error(status: int, code: str, message: str) -> tuple[Response, int]:
    from web.common import api_error

    return api_error(status, code, message)


class RevokedSessions:
    """Signed-out session ids, each until its cookie would have expired anyway; kept in the
    journal's flags (when the app has one) so that a restart does not let them back in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, float] | None = None  # read from the journal on first use

    def revoked(self, sid: str) -> bool:
        with self._lock:
            return sid in self._load()

    def revoke(self, sid: str) -> None:
        """Refuse ``sid`` from now on (kept in the journal when it can be written)."""
        now = time.time()
        with self._lock:
            ids = {k: v for k, v in self._load().items() if v > now}
            ids[sid] = now + SESSION_HOURS * 3600
            self._ids = ids
            journal = _journal()
            try:
                if journal is not None:
                    journal.set_flag(REVOKED_FLAG, json.dumps(ids))
            except JournalError as exc:  # log and carry on: refused until a restart only
                log.error("❌ sign-out not kept in the journal (%s): a restart forgets it", exc)

    def _load(self) -> dict[str, float]:
        if self._ids is None:
            journal = _journal()
            raw = journal.flag(REVOKED_FLAG) if journal is not None else None
            self._ids = _parse_revoked(raw)
        return self._ids


def _journal() -> Any:
    services = current_app.extensions.get("trading")
    return getattr(services, "journal", None)


def _parse_revoked(raw: str | None) -> dict[str, float]:
    """The journal's flag, or {} (logged) when it is not what revoke() wrote."""
    if not raw:
        return {}
    try:
        ids = json.loads(raw)
        return {str(k): float(v) for k, v in ids.items()}
    except (ValueError, TypeError, AttributeError):
        log.error("❌ %s in the journal is unreadable; no sign-out is remembered", REVOKED_FLAG)
        return {}
