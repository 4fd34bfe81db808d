"""Health and the dashboard's state: /status, /health, /state, the /stream of state events and the
OpenAPI document.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import (
    Response,
    current_app,
    g,
    jsonify,
    stream_with_context,
)

import auth
from ib_link import LinkState
from openapi import documented
from reader_rows import Snapshot
from schemas_out import HealthOut, StateOut, StatusOut
from schemas_query import StreamQuery  # the screen's stream parameter (web/screen.py)
from services import Services
from web.common import (
    RETRY_AFTER,
    SHARED_FOR,
    Records,
    _age,
    _cached,
    _client_has,
    _conditional,
    _dumps,
    _etag,
    _flat_dict,
    _object_json,
    _records,
    api_error,
    bp,
    ib_servers,
    services,
)
from web.reads import _account_json, _executions_json, _order_rows, _orders_key, _positions_json

STREAM_KEEPALIVE = (
    2.0  # seconds between pulses (the status) on an idle stream; also finds dead clients
)


# ------------------------------------------------------------------- reads
@bp.get("/status")
@documented(StatusOut, etag=True)
def status() -> Response:
    """Health of both connections, the threads, the account and the queue: built once per data
    version and second (its clock and ages move on between versions), whoever asks."""
    svc = services()
    digest, body = _status_now(svc)
    etag = _etag(("status", digest))
    if _client_has(etag):
        return Response(status=304, headers={"ETag": etag})
    return Response(body, mimetype="application/json", headers={"ETag": etag})


def _status_now(svc: Services) -> tuple[str, bytes]:
    """``_status_answer``, built once per data version and second."""
    key = (svc.feed.version, int(time.monotonic() / SHARED_FOR))
    answer: tuple[str, bytes] = _cached("status", key, lambda: _status_answer(svc), svc.read_cache)
    return answer


def _status_answer(svc: Services) -> tuple[str, bytes]:
    """The body of /status and a digest of what it says (its ETag, and part of /state's). Not
    only the data version: a queued request, an open stream, a reconnect attempt or the
    simulator's market clock change it too. The times that move on by themselves (clock, ages,
    heartbeats) are left out."""
    payload = status_payload(svc, svc.connector.snapshot())
    steady = {k: v for k, v in payload.items() if k not in _CLOCK_FIELDS}
    steady["connections"] = {
        name: {k: v for k, v in conn.items() if k != "last_heartbeat"}
        for name, conn in payload["connections"].items()
    }
    digest = hashlib.blake2b(_dumps(steady).encode(), digest_size=8).hexdigest()
    return digest, _dumps(payload).encode()


_CLOCK_FIELDS = frozenset({"now", "data_age", "orders_age"})


def status_payload(svc: Services, snap: Snapshot) -> dict[str, Any]:
    """The body of /status (also part of the stream's state events)."""
    orders = svc.handler.state() if svc.handler else None
    account = snap.account
    link = ib_servers(svc)
    reader_link = svc.connector.link_state()
    healthy = snap.connection.state == "connected" and (
        orders is None or orders.state == "connected"
    )
    journal = _journal_json(svc)
    return {
        "ok": healthy and link.reachable and journal["ok"],
        "ib_servers": link.as_dict(),
        "journal": journal,
        "now": time.time(),
        "simulator": svc.simulator is not None,
        "sim_clock": svc.simulator.clock_label() if svc.simulator else "",
        "gateway": {"host": svc.host, "port": svc.port},
        "connections": {
            "reader": _flat_dict(snap.connection),
            "orders": _flat_dict(orders) if orders else {"state": "disabled"},
        },
        "threads": {
            "reader": snap.connection.thread_alive,
            "orders": orders.thread_alive if orders else None,
        },
        "server_version": snap.connection.server_version,
        "account": account.account if account else None,
        "paper": account.paper if account else None,
        "mode": None if account is None else ("paper" if account.paper else "live"),
        "read_only": svc.handler is None,
        "trading_halted": bool(svc.handler and svc.handler.halted),
        "halt_reason": svc.handler.halt_reason if svc.handler else None,
        "queue_depth": svc.handler.queue_depth() if svc.handler else 0,
        "in_flight": svc.handler.in_flight() if svc.handler else 0,
        "data_age": _age(_confirmed(snap, snap.updated_at, reader_link)),
        "orders_age": _age(_polled(snap.orders_updated_at, reader_link)),
        "streams": svc.feed.open_streams,
        "risk_limits": svc.gate.limits() if svc.gate else None,
    }


def _journal_json(svc: Services) -> dict[str, Any]:
    """Whether the order journal saves (a full disk or an I/O error: orders are refused, or
    their changes live only in memory until it does again)."""
    failure = svc.journal.health.failure if svc.journal else None
    if failure is None:
        return {"ok": True, "since": None, "error": None, "unsaved": 0}
    assert svc.journal is not None
    return {
        "ok": False,
        "since": failure.since,
        "error": failure.error,
        "unsaved": svc.journal.unsaved(),
    }


def _confirmed(snap: Snapshot, changed_at: float | None, link: LinkState) -> float | None:
    """When the reader's data were last confirmed current: the subscriptions push every
    change, so while the connection answers its heartbeat the data are as fresh as that
    heartbeat, however long ago a value last changed. While the gateway has lost IB's servers
    (1100) it answers the heartbeat but pushes nothing: the data are confirmed only up to the
    outage's start."""
    beat = snap.connection.last_heartbeat if snap.connection.state == "connected" else None
    if beat is not None and not link.reachable:
        beat = min(beat, link.since) if link.since is not None else None
    stamps = [t for t in (changed_at, beat) if t is not None]
    if changed_at is None:
        return None  # nothing received yet: no age to show
    return max(stamps)


def _polled(asked_at: float | None, link: LinkState) -> float | None:
    """When the order list was last current: the reader asks for other clients' orders (they
    are not pushed to it), so its last answer, not the heartbeat, dates them; while IB's
    servers are lost the gateway answers from what it knew, so no later than the outage."""
    if asked_at is not None and not link.reachable and link.since is not None:
        return min(asked_at, link.since)
    return asked_at


def state_json(svc: Services) -> str:
    """Everything the dashboard shows, from the snapshots (GET /state and the stream), as
    JSON text: each part is serialised once per data version, whoever asks."""
    version = svc.feed.version  # before the data it stands for
    snap = svc.connector.snapshot()
    records = _records(svc)
    return _object_json(
        version=_dumps(version),
        status=_status_now(svc)[1].decode(),
        account=_account_json(snap),
        positions=_positions_json(snap),
        orders=_state_orders_json(svc, snap, records),
        executions=_executions_json(snap),
    )


def _state_orders_json(svc: Services, snap: Snapshot, records: Records) -> str:
    """The orders of /state and the stream: every brief row (as /orders serves them, each
    serialised once per change); an order's lifecycle is at its url (/orders/<id>)."""
    key = _orders_key(snap, records)
    return _cached(
        "state-orders",
        key,
        lambda: "[" + ",".join(r.text.decode() for r in _order_rows(svc, snap, records, key)) + "]",
    )


@bp.get("/state")
@documented(StateOut, etag=True)
def state() -> Response:
    """The whole dashboard state in one answer (the polling fallback of the stream).

    The same JSON as ``state_json``, built once per data version and second (the status's
    clock and ages move on between versions), whoever asks."""
    svc = services()
    version = svc.feed.version

    def build() -> bytes:
        snap = svc.connector.snapshot()
        records = _records(svc)
        rest = _cached(
            "state-rest",
            version,
            lambda: (
                ","
                + _object_json(
                    account=_account_json(snap),
                    positions=_positions_json(snap),
                    orders=_state_orders_json(svc, snap, records),
                    executions=_executions_json(snap),
                )[1:]
            ).encode(),
        )
        return f'{{"version":{_dumps(version)},"status":'.encode() + status_body + rest

    # tagged by what its status says too; the status part is /status's body (_status_answer)
    digest, status_body = _status_now(svc)
    # its status says when the reader is down or IB's servers are lost
    return _conditional((version, digest), build, shared="state", reader_data=False)


@bp.get("/stream")
@documented(str, 503, media="text/event-stream", query=StreamQuery)
def stream() -> Response | tuple[Response, int]:
    """Server-Sent Events: a ``state`` event after every change, ``quotes`` events as the
    watchlist's (and ``watch``'s) prices move, comments while idle."""
    svc = services()
    from web import (
        screen as screen_api,  # the trader's screen (its own blueprint; imports this module)
    )

    extra = screen_api.stream_symbols()  # 400 naming ``watch`` before a slot is taken
    if not svc.long_calls.acquire(blocking=False):
        return api_error(
            503,
            "too_many_streams",
            "the server's long-call slots are all taken; poll /api/v1/state instead",
            retry_after=RETRY_AFTER,
        )
    if not svc.feed.open_stream():
        svc.long_calls.release()
        return api_error(
            503,
            "too_many_streams",
            f"at most {svc.feed.max_streams} live streams; poll /api/v1/state instead",
            retry_after=RETRY_AFTER,
        )
    slot = _StreamSlot(svc, screen_api.stream_watch(extra))  # its quotes, until it closes
    # a browser's stream ends once its session is signed out or its cookie expires (checked at
    # each wake, 2 s at most)
    allowed = _session_in_force(auth.session_ends_at()) if g.get("auth") == "browser" else None
    response = Response(
        stream_with_context(_events(svc, slot, allowed)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.call_on_close(slot.release)  # also when the body never runs (HEAD, errors)
    return response


class _StreamSlot:
    """One taken stream slot, given back exactly once."""

    def __init__(self, svc: Services, on_release: Callable[[], None] | None = None) -> None:
        self._svc = svc
        self._lock = threading.Lock()
        self._held = True
        self._on_release = on_release

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._svc.feed.close_stream()
            self._svc.long_calls.release()
            if self._on_release is not None:
                self._on_release()


def _session_in_force(ends_at: float) -> Callable[[], bool]:
    """Whether the browser's session still holds: not signed out, its cookie not yet expired
    (a stream opened an hour before the cookie's 24 h were up went on for good)."""
    return lambda: auth.session_valid() and time.time() < ends_at


def _events(svc: Services, slot: _StreamSlot, allowed: Callable[[], bool] | None) -> Iterator[str]:
    feed = svc.feed
    try:
        yield "retry: 1000\n\n"
        seen, seen_quotes = -1, -1
        told = time.monotonic()  # when the page last had the state or the status from us
        while not feed.closed:
            wait = max(0.0, told + STREAM_KEEPALIVE - time.monotonic())
            version, quotes = feed.wait_any(seen, seen_quotes, wait)
            if feed.closed or (allowed is not None and not allowed()):
                break
            if quotes != seen_quotes:  # the screen's quotes: a small frame of their own
                seen_quotes = quotes
                if svc.quotes is not None:
                    yield _cached("stream-quotes", quotes, lambda: _screen_frame(svc))
            if version != seen:
                seen, told = version, time.monotonic()
                # one frame per version, however many dashboards are watching
                yield _cached(
                    "stream-frame",
                    version,
                    lambda v=version: (
                        f"id: {v}\nevent: state\ndata: {state_json(svc)}\n\n"
                    ).encode(),
                )
            elif time.monotonic() - told >= STREAM_KEEPALIVE:
                # the status again (its heartbeats and ages), so an idle page shows how fresh
                # its data are, however often quotes move; also finds a vanished browser
                told = time.monotonic()
                yield f"event: pulse\ndata: {_status_now(svc)[1].decode()}\n\n"
    finally:
        slot.release()


def _screen_frame(svc: Services) -> bytes:
    from web import screen as screen_api

    assert svc.quotes is not None
    return screen_api.stream_frame(svc.quotes.snapshot()).encode()


@bp.get("/openapi.json")
@documented(dict, etag=True)
def openapi_document() -> Response:
    """The OpenAPI document of this API (generated from its routes and models)."""
    from openapi import document

    return _conditional(
        "openapi",
        lambda: _cached("openapi", 0, lambda: _dumps(document(current_app))),
        reader_data=False,
    )


@bp.get("/health")
@documented(
    HealthOut,
    etag=True,
    public=True,
    same_body={503: "not healthy: ok false and the reason"},
)
def health() -> Response | tuple[Response, int]:
    """200 when both connections are up and set up (the order handler's journal matched with
    the gateway: orders are taken), IB's servers reachable and the journal saves, else
    503 with ``ok`` false and the ``reason`` (for monitors)."""
    svc = services()
    connections = [c for c in (svc.connector, svc.handler) if c is not None]
    down = [c.name for c in connections if not c.connected]
    if down:
        return jsonify(
            {"ok": False, "reason": f"not connected to the gateway: {', '.join(down)}"}
        ), 503
    setting_up = [c.name for c in connections if not c.ready]
    if setting_up:
        return jsonify(
            {
                "ok": False,
                "reason": f"not ready: {', '.join(setting_up)} (connected, still subscribing "
                "or matching orders with the gateway)",
            }
        ), 503
    link = ib_servers(svc)
    if not link.reachable:
        return jsonify({"ok": False, "reason": link.reason()}), 503
    failure = svc.journal.health.failure if svc.journal else None
    if failure is not None:
        return jsonify(
            {"ok": False, "reason": f"the order journal cannot be written: {failure.error}"}
        ), 503
    # tagged by the answer alone: the data version told anyone, unsigned in, when orders moved
    return _conditional("health-ok", lambda: _dumps({"ok": True}), reader_data=False)
