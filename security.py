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
import ipaddress
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from flask import Flask, Response, current_app, g, request
from flask_wtf.csrf import CSRFError, CSRFProtect

import auth
from config import ConfigError, Settings
from durable_files import write_whole
from screen_store import ALERTS_FILE, WATCHLIST_FILE

log = logging.getLogger(__name__)

SAFE_METHODS = auth.SAFE_METHODS
UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "[::]"})  # bind-anywhere addresses, never a Host
KEPT_FILES = (
    "api_token",
    "secret_key",
    "app.lock",
    "sim_state.json",
    "sim_state.json.tmp",
    "sim_state.json.log",
)
SCREEN_FILES = tuple(
    f"{stem}{tail}"
    for stem in (WATCHLIST_FILE.removesuffix(".json"), ALERTS_FILE.removesuffix(".json"))
    for tail in (".json", ".tmp", ".json.bad")
)
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # a Referer only to the app itself: the https CSRF check needs one (Flask-WTF's SSL_STRICT)
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
csrf = CSRFProtect()


class InstanceLockedError(RuntimeError):
    """Another copy of the app holds the lock."""


class UnusableSetting(RuntimeError):
    """A setting names a folder or a port the app cannot use (not writable, taken)."""


@contextmanager
def naming(key: str, value: object, what: str, errnos: tuple[int, ...] = ()) -> Iterator[None]:
    """Turn an OSError (one of ``errnos`` if given) into one line naming the setting
    (``KEY=value: what: reason``)."""
    try:
        yield
    except OSError as exc:
        if errnos and exc.errno not in errnos:
            raise
        raise UnusableSetting(f"{key}={value!r}: {what}: {exc.strerror or exc}") from exc


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


KEPT_SECRET_MIN = 16  # characters: what API_TOKEN / SECRET_KEY take at least (config.Secret)


def _kept_secret(folder: Path | None, name: str) -> tuple[str, bool]:
    """The secret kept in ``folder/name``, else a new one written there (whole or not at all:
    a temporary file, fsynced, then renamed). A kept file that is empty or cut short (a start
    that crashed or ran out of disk while writing it, before the write was atomic) is replaced:
    an empty API token matched an empty bearer token."""
    if folder is None:
        return secrets.token_urlsafe(32), True
    path = folder / name
    if path.exists():
        kept = path.read_text().strip()
        if len(kept) >= KEPT_SECRET_MIN:
            return kept, False
        log.warning("🔑 %s is empty or cut short: a new %s is generated", path, name)
    make_private_dir(folder)
    value = secrets.token_urlsafe(32)
    write_whole(path, value + "\n")
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
    """Refuse a non-loopback bind unless an API token, a SECRET_KEY and TRUSTED_HOSTS naming
    the address the dashboard is reached by are configured."""
    problems = [
        f"TRUSTED_HOSTS: {host} is a bind-anywhere address, never a Host a browser "
        "sends; name the machine's address or DNS name"
        for host in _normalised(settings.trusted_hosts) & UNSPECIFIED_HOSTS
    ]
    if not is_loopback(settings.dashboard_host):
        problems += _exposed_bind_problems(settings)
    if problems:
        raise ConfigError(problems)


def _exposed_bind_problems(settings: Settings) -> list[str]:
    host = settings.dashboard_host
    missing = [
        key
        for key, value in (("API_TOKEN", settings.api_token), ("SECRET_KEY", settings.secret_key))
        if not value
    ]
    problems = []
    if missing:
        problems.append(
            f"DASHBOARD_HOST={host!r} exposes the dashboard beyond this machine: set "
            f"{' and '.join(missing)} in .env first (anyone who can reach the port could "
            "otherwise trade on your account)"
        )
    named = {
        h for h in _normalised(settings.trusted_hosts) - UNSPECIFIED_HOSTS if not is_loopback(h)
    }
    bound = host_name(host if ":" not in host or host.startswith("[") else f"[{host}]")
    if bound in UNSPECIFIED_HOSTS and not named:
        problems.append(
            f"DASHBOARD_HOST={host!r}: set TRUSTED_HOSTS to the address or name "
            "this machine is reached by (e.g. TRUSTED_HOSTS=192.168.1.20)"
        )
    elif bound not in UNSPECIFIED_HOSTS and bound not in named:
        problems.append(
            f"DASHBOARD_HOST={host!r}: add {host} to TRUSTED_HOSTS (Host headers "
            "are checked against that list only)"
        )
    if len(settings.trusted_proxies) == 1 and settings.trusted_proxies[0].isdigit():
        problems.append(
            f"TRUSTED_PROXIES={settings.trusted_proxies[0]} believes the X-Forwarded-* headers "
            f"of every request, and DASHBOARD_HOST={host!r} lets anyone send them (posing as "
            "any address to the lockout and WEBHOOK_ALLOWED_IPS): name the proxy's address "
            "instead, or bind to 127.0.0.1 behind it"
        )
    return problems


def host_name(header: str) -> str | None:
    """The host of a ``Host`` header or TRUSTED_HOSTS entry, lower case, without the port
    (IPv6 in brackets); None when it is not a well-formed host."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, port = (value[: end + 1], value[end + 1 :]) if end > 0 else ("", "")
    else:
        name, colon, rest = value.partition(":")
        port = colon + rest
    if port and not re.fullmatch(r":[0-9]{1,5}", port):
        return None
    if not re.fullmatch(r"[a-z0-9.-]{1,253}|\[[0-9a-f:.]{2,45}\]", name):
        return None
    return name.rstrip(".") if not name.startswith("[") else name


def _normalised(hosts: tuple[str, ...]) -> set[str]:
    names = (
        host_name(f"[{h}]" if h.count(":") > 1 and not h.startswith("[") else h) for h in hosts
    )
    return {name for name in names if name}


def make_private_dir(folder: Path) -> None:
    """Create ``folder`` if needed, the owner's alone (0700); an existing one is left as it is
    (``secure_data_dir`` decides whether it is the app's to make private)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def secure_data_dir(settings: Settings) -> None:
    """Data folder 0700; the journal, secrets, lock and demo account in it 0600 (files made
    by an earlier version are fixed at start). A folder that holds anything else (JOURNAL_PATH
    in /tmp, a home folder, /) is not the app's: its mode is left alone (made 0700, /tmp
    locked every other user and program out) and only the app's files in it are private."""
    folder = data_dir(settings)
    if folder is None:
        return
    make_private_dir(folder)
    journal = Path(settings.journal_path).name
    own = (journal, f"{journal}-wal", f"{journal}-shm", f"{journal}-journal", *KEPT_FILES)
    others = sorted(p.name for p in folder.iterdir() if p.name not in (*own, *SCREEN_FILES))
    if others:
        log.warning(
            "🔒 the data folder %s (JOURNAL_PATH's) also holds %s: its mode is left as it "
            "is; the app's files in it are made 0600",
            folder,
            ", ".join(others[:3]) + (" ..." if len(others) > 3 else ""),
        )
    elif stat.S_IMODE(folder.stat().st_mode) != 0o700:
        os.chmod(folder, 0o700)
    os.close(os.open(folder / journal, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite's -wal/-shm
    for name in (*own, *SCREEN_FILES):  # take the journal's mode
        path = folder / name
        if path.is_file() and path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
            log.info("🔒 %s was readable by others: now 0600", path)


def acquire_instance_lock(settings: Settings) -> IO[str] | None:
    """Hold an exclusive lock in the data folder for the app's lifetime."""
    folder = data_dir(settings)
    if folder is None:
        return None
    make_private_dir(folder)
    fd = os.open(folder / "app.lock", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    handle = os.fdopen(fd, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise InstanceLockedError(
            f"another copy of the app is running (pid {holder}, lock {folder / 'app.lock'}); "
            "two copies would share the order client id"
        ) from None
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
    """Configure hosts, sessions, CSRF, body limit, sign-in, audit and headers on ``app``."""
    app.config.update(
        SECRET_KEY=keys.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_NAME="ibdash_session",
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_HEADERS=["X-CSRFToken"],
        DEBUG=False,
    )
    app.extensions["trusted_hosts"] = frozenset(trusted_hosts(settings))
    csrf.init_app(app)
    app.before_request(_check_host)  # before sign-in: a rebound name never reaches it
    auth.init_auth(app, keys.api_token, settings.dashboard_password)
    app.after_request(_audit_refusal)
    app.after_request(_security_headers)
    app.register_error_handler(CSRFError, _csrf_failed)


def trusted_hosts(settings: Settings) -> set[str]:
    """TRUSTED_HOSTS plus a loopback bind address; never a bind-anywhere address."""
    names = _normalised(settings.trusted_hosts)
    if is_loopback(settings.dashboard_host):
        names |= _normalised((settings.dashboard_host,))
    return names - UNSPECIFIED_HOSTS


def _check_host() -> tuple[Response, int] | None:
    """The Host (behind a trusted proxy: the one it forwarded) must be trusted, and so must the
    Host a loopback peer sent itself: every program on the machine is a "proxy" when
    TRUSTED_PROXIES is 127.0.0.1, a DNS-rebound page in the trader's browser included, and its
    own X-Forwarded-Host would pass it. (A proxy elsewhere, a container's, may send its
    upstream's name: only what it forwards is checked.)"""
    orig = request.environ.get("werkzeug.proxy_fix.orig", {})
    sent = orig.get("HTTP_HOST") if is_loopback(orig.get("REMOTE_ADDR") or "") else None
    trusted = current_app.extensions["trusted_hosts"]
    for header in (sent, request.headers.get("Host", "")):
        if header is not None and host_name(header) not in trusted:
            return _untrusted_host(header)
    return None


def _untrusted_host(header: str) -> tuple[Response, int]:
    shown = header[:100]
    log.warning("🚫 refused Host %r from %s", shown, request.remote_addr)
    if request.path.startswith("/api/"):
        return _json_error(400, "untrusted_host", f"Host {shown!r} is not in TRUSTED_HOSTS")
    return Response(f"Host {shown!r} is not in TRUSTED_HOSTS", 400, mimetype="text/plain"), 400


def _csrf_failed(exc: CSRFError) -> tuple[Response, int]:
    message = f"CSRF check failed: {exc.description}"
    if request.path.startswith("/api/"):
        return _json_error(403, "csrf_failed", message)
    return Response(message, 403, mimetype="text/plain"), 403


def _audit_refusal(response: Response) -> Response:
    """Every refused state-changing request leaves an audit row (unless its view wrote one)."""
    if response.status_code >= 400 and request.method not in SAFE_METHODS and not g.get("audited"):
        auth.audit(g.get("auth", "anonymous"), f"refused: {response.status}")
    return response


def _json_error(status: int, code: str, message: str) -> tuple[Response, int]:
    from web.common import api_error

    return api_error(status, code, message)


def _security_headers(response: Response) -> Response:
    # one pass over the headers (werkzeug's setdefault raises and catches a KeyError per miss)
    present = {key.lower() for key in response.headers.keys()}
    for name, value in HEADERS.items():
        if name.lower() not in present:
            response.headers.add(name, value)
    return response
