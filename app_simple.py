"""The dashboard app: ``create_app()`` factory and ``python app_simple.py``.

One process, threads only: waitress serves Flask on worker threads; the
IBConnector and the OrderHandler each own a loop thread and a connection.
Nothing starts at import time.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException

import proxies
import security
import web
import webhook
from config import ConfigError, Settings, load_settings
from journal import JournalError, create_journal
from services import SERVER_THREADS, Services

log = logging.getLogger(__name__)

# How waitress serves the app. Lookahead lets it notice a browser that went away while its SSE
# stream idles. Waitress 3 would drop X-Forwarded-* before the app sees them: whom to believe is
# the app's call (proxies.py, TRUSTED_PROXIES), made per request from the peer's address.
WAITRESS_OPTIONS: dict[str, Any] = {
    "threads": SERVER_THREADS,
    "channel_request_lookahead": 1,
    "clear_untrusted_proxy_headers": False,
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app and start its services.

    ``config`` may hold ``SETTINGS`` (a ready ``Settings``), lower-case
    settings overrides (``settle_first=0``...), and upper-case Flask config
    keys; ``START_SERVICES=False`` builds the app without connecting.
    """
    config = dict(config or {})
    settings = config.pop("SETTINGS", None)
    overrides = {k: config.pop(k) for k in list(config) if not k.isupper()}
    if settings is None:
        settings = load_settings(overrides=overrides)
    elif overrides:
        raise ConfigError(["give either SETTINGS or overrides, not both"])
    app = Flask(__name__)
    app.config.update(JSON_SORT_KEYS=False, START_SERVICES=True)
    app.config.update(config)
    with security.naming("JOURNAL_PATH", settings.journal_path, _folder_use(settings)):
        new_journal = not os.path.exists(settings.journal_path)
        security.secure_data_dir(settings)  # makes a new journal's file: 0 bytes, 0600
        if new_journal:  # written now, never left at 0 bytes: a journal found so was emptied
            _create_new_journal(settings.journal_path)
        keys = security.load_secrets(settings)
    app.extensions["token_generated"] = keys.token_generated
    security.init_security(app, settings, keys)
    app.register_blueprint(web.bp)
    app.register_blueprint(web.derivatives.bp)
    app.register_blueprint(web.screen.bp)  # the trader's screen: P&L, watchlist, alerts...
    proxies.install(app, settings)
    webhook.install_redaction(app.logger)  # /webhook/<secret> never shows in a log line
    app.add_url_rule("/", "index", _index)
    app.register_error_handler(HTTPException, _http_error)
    services = Services(settings)
    app.extensions["trading"] = services
    if app.config["START_SERVICES"]:
        with security.naming("JOURNAL_PATH", settings.journal_path, _folder_use(settings)):
            lock = security.acquire_instance_lock(settings)
        try:
            services.start()
        except BaseException:
            security.release_instance_lock(lock)
            raise
        app.extensions["instance_lock"] = lock
        atexit.register(shutdown, app)
    return app


def _folder_use(settings: Settings) -> str:
    return f"the data folder {security.data_dir(settings)} cannot be made or written"


def shutdown(app: Flask) -> None:
    """Stop the services and let go of the instance lock (idempotent)."""
    app.extensions["trading"].stop()
    security.release_instance_lock(app.extensions.pop("instance_lock", None))


def _create_new_journal(path: str) -> None:
    """A new journal now; one that could not be made (a full disk) is taken away again: the
    next start makes it anew instead of refusing the 0-byte file as an emptied journal."""
    try:
        create_journal(path)
    except BaseException:
        if os.path.isfile(path) and os.path.getsize(path) < 512:  # not one page: nothing in it
            for leftover in (path, f"{path}-wal", f"{path}-shm"):
                if os.path.exists(leftover):
                    os.remove(leftover)
        raise


def _index() -> str:
    from flask import current_app

    svc: Services = current_app.extensions["trading"]
    return render_template(
        "index.html", snapshot=svc.connector.snapshot(), simulator=svc.simulator is not None
    )


def _http_error(exc: HTTPException) -> Response | tuple[Response, int] | HTTPException:
    """JSON errors under /api (404, 405, 413, bad Host ...), HTML pages elsewhere."""
    if request.path.startswith("/api/"):
        return web.common._on_http_error(exc)
    return exc


def main(argv: list[str] | None = None) -> int:
    """Serve the dashboard with waitress (one process, threads)."""
    try:
        settings: Settings = load_settings()
        security.check_bind(settings)
    except ConfigError as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("ib_async").setLevel(logging.WARNING)
    webhook.install_redaction()
    import waitress_compat

    waitress_compat.install()  # keep-alive after a 304 (conditional GETs of polling scripts)

    for sig in (signal.SIGTERM, signal.SIGHUP):  # as gracefully as Ctrl+C (SIGHUP: the
        signal.signal(sig, _interrupt)  # terminal it runs in was closed)
    try:
        app = create_app({"SETTINGS": settings})
    except (security.InstanceLockedError, security.UnusableSetting, JournalError) as exc:
        print(f"Refusing to start: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # while connecting (a gateway that does not answer: up to 15 s)
        print("🛑 Stopped while starting: what had started is stopped", file=sys.stderr)
        return 0
    try:
        server = _listen(app, settings)
        port = bound_port(server, settings.dashboard_port)  # the one taken for 0
        _print_login_url(app, settings, port)  # listening now: the link works as it shows
        server.run()
    except KeyboardInterrupt:
        log.info("🛑 Shutting down: no new orders, flushing the journal, disconnecting")
    except security.UnusableSetting as exc:
        print(f"Refusing to start: {exc}", file=sys.stderr)
        return 3
    finally:
        shutdown(app)
    return 0


def _listen(app: Flask, settings: Settings) -> Any:
    """The waitress server on the dashboard's address; UnusableSetting naming the port."""
    from waitress import create_server

    address = f"{settings.dashboard_host}:{settings.dashboard_port}"
    with security.naming("DASHBOARD_PORT", settings.dashboard_port, f"cannot listen on {address}"):
        return create_server(
            app,
            host=settings.dashboard_host,
            port=settings.dashboard_port,
            **waitress_options(settings),
        )


def waitress_options(settings: Settings) -> dict[str, Any]:
    """WAITRESS_OPTIONS, and a body declared bigger than MAX_BODY_BYTES refused (413) before
    it is read: waitress would otherwise take up to 1 GB of it, on disk, before Flask's limit."""
    return {**WAITRESS_OPTIONS, "max_request_body_size": settings.max_body_bytes}


def bound_port(server: object, configured: int) -> int:
    """The port a waitress server listens on (for port 0: the one the system gave it; a host
    with several addresses has a socket each: the first one's)."""
    port = getattr(server, "effective_port", None)
    if port is None:
        listen = getattr(server, "effective_listen", None) or [(None, configured)]
        port = listen[0][1]
    return int(port)


def _print_login_url(app: Flask, settings: Settings, port: int) -> None:
    """The sign-in URL with the token (URL-escaped: a configured one may hold '+', '&', '#'),
    on the terminal only (never through a log handler)."""
    token = app.extensions["api_token"]
    folder = security.data_dir(settings)
    if app.extensions.get("token_generated") and folder is not None:
        print(f"🔑 Generated an API token, kept in {folder / 'api_token'}", flush=True)
    print(
        f"Dashboard on {_base_url(settings, port)}/  (Ctrl+C to stop)\n"
        f"🔑 Sign in by opening: {_base_url(settings, port)}/login?token={quote(token, safe='')}\n"
        f"   Scripts send the header 'Authorization: Bearer {token}'",
        flush=True,
    )


def _base_url(settings: Settings, port: int) -> str:
    """The address a browser on this machine (or, for a LAN bind, the LAN) opens."""
    host = settings.dashboard_host
    if security.host_name(host) in security.UNSPECIFIED_HOSTS or host in ("::", "0.0.0.0"):
        lan = [h for h in settings.trusted_hosts if not security.is_loopback(h)]
        host = lan[0] if lan else "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
