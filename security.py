"""Who may talk to the app, and how: tokens, sessions, CSRF, hosts, headers, one instance.

* Scripts call the JSON API with ``Authorization: Bearer <API_TOKEN>``.
* The browser gets a session cookie (SameSite=Strict, HttpOnly) when it loads
  the dashboard (after the optional password); every state-changing request
  it makes carries a CSRF token (Flask-WTF's CSRFProtect) in ``X-CSRFToken``.
* Werkzeug rejects Host headers not in TRUSTED_HOSTS (DNS rebinding).
* Bodies above MAX_BODY_BYTES get 413.
* Responses carry CSP ``default-src 'self'``, nosniff, frame denial.
* A lock file in the data folder refuses a second copy of the app.
"""

from __future__ import annotations

import fcntl
import hmac
import ipaddress
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from flask import Flask, Response, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect

from config import ConfigError, Settings

log = logging.getLogger("security")

PUBLIC_API = {"/api/v1/openapi.json", "/api/v1/health"}
WEBHOOK_PATH = "/api/v1/webhook"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
csrf = CSRFProtect()


class InstanceLockedError(RuntimeError):
    """Another copy of the app holds the lock."""


@dataclass
class Secrets:
    """The secrets in force (never logged)."""

    secret_key: str
    api_token: str
    token_generated: bool


def data_dir(settings: Settings) -> Path | None:
    """The folder of the journal (None for an in-memory journal)."""
    if settings.journal_path == ":memory:":
        return None
    return Path(settings.journal_path).resolve().parent


def load_secrets(settings: Settings) -> Secrets:
    """Configured secrets, else ones generated once and kept (0600) in the data folder."""
    folder = data_dir(settings)
    key = settings.secret_key or _kept_secret(folder, "secret_key")[0]
    if settings.api_token:
        return Secrets(key, settings.api_token, False)
    token, generated = _kept_secret(folder, "api_token")
    return Secrets(key, token, generated)


def _kept_secret(folder: Path | None, name: str) -> tuple[str, bool]:
    if folder is None:
        return secrets.token_urlsafe(32), True
    path = folder / name
    if path.exists():
        return path.read_text().strip(), False
    folder.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value, True


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings) -> None:
    """Refuse a non-loopback bind unless an API token and a SECRET_KEY are configured."""
    if is_loopback(settings.dashboard_host):
        return
    missing = [key for key, value in (("API_TOKEN", settings.api_token),
                                      ("SECRET_KEY", settings.secret_key)) if not value]
    if missing:
        raise ConfigError([
            f"DASHBOARD_HOST={settings.dashboard_host!r} exposes the dashboard beyond this "
            f"machine: set {' and '.join(missing)} in .env first (anyone who can reach the port "
            "could otherwise trade on your account)"])


def acquire_instance_lock(settings: Settings) -> IO[str] | None:
    """Hold an exclusive lock in the data folder for the app's lifetime."""
    folder = data_dir(settings)
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / "app.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise InstanceLockedError(
            f"another copy of the app is running (pid {holder}, lock {folder / 'app.lock'}); "
            "two copies would share the order client id") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def release_instance_lock(handle: IO[str] | None) -> None:
    """Let go of the instance lock."""
    if handle is not None and not handle.closed:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def init_security(app: Flask, settings: Settings, keys: Secrets) -> None:
    """Configure sessions, CSRF, hosts, body limit, auth and headers on ``app``."""
    trusted = list(dict.fromkeys([*settings.trusted_hosts, settings.dashboard_host.lower()]))
    app.config.update(
        SECRET_KEY=keys.secret_key, MAX_CONTENT_LENGTH=settings.max_body_bytes,
        TRUSTED_HOSTS=trusted, SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_NAME="ibdash_session", WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None, WTF_CSRF_HEADERS=["X-CSRFToken"], DEBUG=False)
    app.extensions["api_token"] = keys.api_token
    csrf.init_app(app)
    app.before_request(_authenticate)
    app.after_request(_security_headers)
    app.add_url_rule("/login", "login", _login, methods=["GET", "POST"])
    app.add_url_rule("/logout", "logout", _logout, methods=["POST"])
    app.register_error_handler(CSRFError, _csrf_failed)


def _authenticate() -> ResponseReturnValue | None:
    path = request.path
    if path.startswith("/static/") or path in ("/login",) or path in PUBLIC_API:
        return None
    if path == WEBHOOK_PATH:
        g.auth = "webhook"  # checked by the webhook itself
        return None
    if _bearer_ok():
        g.auth = "token"
        return None
    if path.startswith("/api/"):
        if not session.get("browser"):
            return _json_error(401, "unauthorized", "send 'Authorization: Bearer <API_TOKEN>' "
                               "or use the dashboard")
        g.auth = "browser"
        if request.method not in SAFE_METHODS:
            csrf.protect()
        return None
    return _browser_page()


def _bearer_ok() -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    from flask import current_app
    expected = current_app.extensions["api_token"]
    return hmac.compare_digest(token.strip().encode(), expected.encode())


def _browser_page() -> ResponseReturnValue | None:
    from flask import current_app
    settings = current_app.extensions["trading"].settings
    if request.method not in SAFE_METHODS:
        csrf.protect()
    if settings.dashboard_password and not session.get("browser"):
        return redirect(url_for("login"))
    session["browser"] = True
    g.auth = "browser"
    return None


def _login() -> ResponseReturnValue:
    from flask import current_app
    settings = current_app.extensions["trading"].settings
    error = None
    if request.method == "POST":
        csrf.protect()
        given = request.form.get("password", "")
        if settings.dashboard_password and hmac.compare_digest(
                given.encode(), settings.dashboard_password.encode()):
            session.clear()
            session["browser"] = True
            return redirect(url_for("index"))
        error = "Wrong password"
        log.warning("failed dashboard login from %s", request.remote_addr)
    if not settings.dashboard_password:
        return redirect(url_for("index"))
    return render_template("login.html", error=error)


def _logout() -> ResponseReturnValue:
    csrf.protect()
    session.clear()
    return redirect(url_for("login"))


def _csrf_failed(exc: CSRFError) -> tuple[Response, int] | tuple[str, int]:
    if request.path.startswith("/api/"):
        return _json_error(400, "csrf_failed", f"CSRF check failed: {exc.description}")
    return f"CSRF check failed: {exc.description}", 400


def _json_error(status: int, code: str, message: str) -> tuple[Response, int]:
    from api import api_error
    return api_error(status, code, message)


def _security_headers(response: Response) -> Response:
    # one pass over the headers (werkzeug's setdefault raises and catches a KeyError per miss)
    present = {key.lower() for key in response.headers.keys()}
    for name, value in HEADERS.items():
        if name.lower() not in present:
            response.headers.add(name, value)
    return response
