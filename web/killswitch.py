"""The kill switch: read it, engage it (halt new orders, cancel every working order and wait
for the broker to confirm) or release it. Registered on the same ``api`` blueprint as the writes.
"""

from __future__ import annotations

import dataclasses
import time

from flask import (
    Response,
    g,
    jsonify,
)

from openapi import documented
from reader_rows import OrderRow
from schemas import KillSwitchIn
from schemas_out import (
    KillSwitchOut,
    KillSwitchResult,
)
from services import Services
from web.common import (
    _audit,
    _conditional,
    _dumps,
    _handler,
    _json,
    _json_body,
    _long_call,
    _validate,
    bp,
    services,
)

KILL_SWITCH_CONFIRM = 10.0  # seconds to wait for the broker to confirm the cancels
UNSAVED = " (not saved: the order journal cannot be written; it ends if the app restarts)"


@bp.get("/kill-switch")
@documented(KillSwitchOut, 403, etag=True)
def kill_switch_state() -> Response:
    """Whether new orders are halted."""
    handler = _handler()
    return _conditional(
        services().feed.version,
        lambda: _dumps({"engaged": handler.halted, "reason": handler.halt_reason}),
        reader_data=False,
    )


@bp.post("/kill-switch")
@documented(KillSwitchResult, 403, 503, body=KillSwitchIn)
def kill_switch() -> tuple[Response, int]:
    """Engage (halt new orders, persisted; cancel every working order and confirm it from
    the broker) or release the kill switch."""
    body = _json_body()
    change = _validate(KillSwitchIn, body)
    svc = services()
    source = "dashboard" if g.get("auth") == "browser" else "api"
    if not change.engaged:
        _handler().release_kill_switch()
        _audit(source, body, None, "kill switch released")
        return jsonify({"engaged": False}), 200
    reason = change.reason or "engaged from the API"
    started = time.time()
    handler = _handler()
    handler.engage_kill_switch(reason)  # halted from here on, whatever follows
    persisted = handler.kill_switch.persisted
    _audit(source, body, None, f"kill switch engaged: {reason}" + ("" if persisted else UNSAVED))
    with _long_call(required=False) as may_wait:  # busy: answer now, unconfirmed
        fresh, still_open = _await_no_open_orders(
            svc, started, KILL_SWITCH_CONFIRM if may_wait else 0.0
        )
    return _json(
        {
            "engaged": True,
            "reason": reason,
            "cancel_confirmed": fresh and not still_open,
            "broker_view_fresh": fresh,
            "still_open": [dataclasses.asdict(r) for r in still_open],
            "persisted": persisted,
        }
    ), 200


def _await_no_open_orders(
    svc: Services, since: float, timeout: float
) -> tuple[bool, list[OrderRow]]:
    """Wait until a broker refresh newer than ``since`` shows no open order. Returns
    (whether the broker view is newer than ``since``, the orders it still shows open)."""
    deadline = time.monotonic() + timeout
    while True:
        svc.connector.request_refresh()
        seen = svc.feed.version  # before the snapshot: a change after it wakes the wait
        snap = svc.connector.snapshot()
        fresh = (snap.orders_updated_at or 0) > since
        still_open = [o for o in snap.orders if o.open]
        if (fresh and not still_open) or time.monotonic() > deadline:
            return fresh, still_open
        svc.feed.wait(seen, 0.2)
