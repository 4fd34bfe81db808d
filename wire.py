"""The API's wire format for times: ISO 8601 in UTC with milliseconds, everywhere; and
numbers as messages write them (``plain_number``).

Inside the app a time is epoch seconds (a float); IB's execution times arrive as ISO text.
Every JSON answer of the API passes through ``to_wire``, which turns the value of each
field named in ``TIME_FIELDS`` into ``2026-11-30T15:00:00.123Z``; the OpenAPI document
says the same of those fields (``openapi.document`` calls ``wire_schema``). Durations
(``data_age``, ``orders_age``...) stay seconds.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# Fields holding a point in time, whatever the object they are in.
TIME_FIELDS = frozenset(
    {
        "at",
        "created_at",
        "updated_at",
        "now",
        "since",
        "connected_since",
        "last_heartbeat",
        "time",
        "fetched_at",
        "triggered_at",
        "primed_at",
        "gateway_time",
    }
)
DATE_TIME = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601, UTC, milliseconds (e.g. 2026-11-30T15:00:00.123Z)",
}


def iso_ms(value: float | str | None) -> str | None:
    """``value`` (epoch seconds, or ISO text) as ISO 8601 UTC with milliseconds; None stays
    None; text that is not a time is returned as it is."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not value:
            return None
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
    else:
        stamp = datetime.fromtimestamp(float(value), UTC)
    text = stamp.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def plain_number(value: float) -> str:
    """A number in a message as a trader writes it: every significant digit (up to 12, which
    hides float noise such as 170.13000000000002), no exponent, no trailing zeros: 21034.75,
    1234567, 0.00005, 150. (``:g`` keeps six digits: 21034.75 would read 21034.8.)"""
    number = float(value) + 0.0  # -0.0 reads 0
    if not math.isfinite(number):
        return str(number)
    return format(Decimal(f"{number:.12g}").normalize(), "f")


def to_wire(value: Any) -> Any:
    """A JSON-ready value with every time field in ISO 8601 UTC (a new object). A number that
    is no number (NaN, ±Infinity: a broker's odd value) is null: JSON has no such numbers, and
    a browser's JSON.parse refuses the whole answer (/state, and with it the dashboard)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {
            k: (iso_ms(v) if k in TIME_FIELDS and isinstance(v, int | float | str) else to_wire(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


def wire_schema(schema: Any) -> Any:
    """A JSON schema whose time fields (numbers inside the app) say date-time strings."""
    if isinstance(schema, dict):
        out = {}
        for key, sub in schema.items():
            if key == "properties" and isinstance(sub, dict):
                out[key] = {
                    name: (_as_time(prop) if name in TIME_FIELDS else wire_schema(prop))
                    for name, prop in sub.items()
                }
            else:
                out[key] = wire_schema(sub)
        return out
    if isinstance(schema, list):
        return [wire_schema(s) for s in schema]
    return schema


def _as_time(prop: dict[str, Any]) -> dict[str, Any]:
    """A time property's schema: number or text (or null) becomes a date-time string."""
    kinds = [prop] if "type" in prop else prop.get("anyOf", [])
    types = {k.get("type") for k in kinds if isinstance(k, dict)}
    if not types or not types <= {"number", "integer", "string", "null"} or types == {"null"}:
        return wire_schema(prop)
    described = {k: v for k, v in prop.items() if k in ("title", "description")}
    described.setdefault("description", DATE_TIME["description"])
    base = {"type": "string", "format": "date-time"}
    if "null" in types:
        return {"anyOf": [base, {"type": "null"}], **described}
    return {**base, **described}
