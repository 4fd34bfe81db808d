"""The dashboard app: ``create_app()`` factory and ``python app_simple.py``.

One process, threads only: waitress serves Flask on worker threads; the
IBConnector and the OrderHandler each own a loop thread and a connection.
Nothing starts at import time.
"""

from __future__ import annotations

import atexit
import logging
import sys
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, render_template, request

import api
from config import ConfigError, Settings, load_settings
from services import Services

log = logging.getLogger("app")


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
        raise ConfigError("give either SETTINGS or overrides, not both")
    app = Flask(__name__)
    app.config.update(JSON_SORT_KEYS=False, START_SERVICES=True)
    app.config.update(config)
    app.register_blueprint(api.bp)
    app.add_url_rule("/", "index", _index)
    app.register_error_handler(404, _not_found)
    services = Services(settings)
    app.extensions["trading"] = services
    if app.config["START_SERVICES"]:
        services.start()
        atexit.register(services.stop)
    return app


def _index() -> str:
    from flask import current_app
    svc: Services = current_app.extensions["trading"]
    return render_template("index.html", snapshot=svc.connector.snapshot(),
                           simulator=svc.simulator is not None)


def _not_found(exc: Exception) -> Response | tuple[Response, int] | tuple[str, int]:
    if request.path.startswith("/api/"):
        return api.api_error(404, "not_found", f"no such endpoint: {request.path}")
    return "Not found", 404


def main(argv: list[str] | None = None) -> int:
    """Serve the dashboard with waitress (one process, threads)."""
    try:
        settings: Settings = load_settings()
    except ConfigError as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("ib_async").setLevel(logging.WARNING)
    from waitress import serve

    app = create_app({"SETTINGS": settings})
    host, port = settings.dashboard_host, settings.dashboard_port
    print(f"Dashboard on http://{host}:{port}/  (Ctrl+C to stop)", flush=True)
    try:
        serve(app, host=host, port=port, threads=16)
    finally:
        app.extensions["trading"].stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
