"""The OpenAPI 3.1 document of the JSON API (GET /api/v1/openapi.json).

Request bodies come from the pydantic models that validate them, so the
document cannot drift from what the server accepts.
"""

from __future__ import annotations

from typing import Any

from schemas import ModifyIn, OrderIn, WebhookIn

ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["status", "code", "message"],
        "properties": {"status": {"type": "integer"}, "code": {"type": "string"},
                       "message": {"type": "string"}, "field": {"type": "string"},
                       "details": {"type": "array", "items": {"type": "object"}}}}},
}
OBJECT = {"type": "object"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(ok: int, *errors: int, schema: dict[str, Any] = OBJECT) -> dict[str, Any]:
    out: dict[str, Any] = {str(ok): {"description": "OK", "content": _json(schema)}}
    for code in (401, *errors):
        out[str(code)] = {"description": "error", "content": _json(
            {"$ref": "#/components/schemas/Error"})}
    return out


def _get(summary: str, *errors: int, params: list[dict] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": _responses(200, *errors)}
    if params:
        op["parameters"] = params
    return {"get": op}


def _post(summary: str, body: str | None, ok: int, *errors: int,
          params: list[dict] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": _responses(ok, 400, *errors)}
    if body:
        op["requestBody"] = {"required": True, "content": _json(
            {"$ref": f"#/components/schemas/{body}"})}
    if params:
        op["parameters"] = params
    return {"post": op}


ORDER_ID = {"name": "order_id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}}
SYMBOL = {"name": "symbol", "in": "query", "required": True,
          "schema": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9.]{0,14}$"}}
SEC_TYPE = {"name": "sec_type", "in": "query", "required": False,
            "schema": {"type": "string", "enum": ["STK", "CASH"]}}
STATUS = {"name": "status", "in": "query", "required": False,
          "schema": {"type": "string", "enum": ["all", "open", "completed"]}}
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}}
WAIT = {"name": "wait", "in": "query", "required": False,
        "schema": {"type": "string", "enum": ["0", "1", "true", "false"]}}


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    schemas = {"Error": ERROR}
    for model in (OrderIn, ModifyIn, WebhookIn):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {"title": "IB Dashboard API", "version": "1.0.0",
                 "description": "Read the account and place orders through the dashboard's "
                                "queued order handler. Authenticate with a bearer token."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/api/v1/status": _get("Connections, threads, account, queue depth"),
            "/api/v1/account": _get("Account figures", 503),
            "/api/v1/positions": _get("Positions"),
            "/api/v1/orders": {**_get("Every client's orders, merged with ours", params=[STATUS]),
                               **_post("Place an order", "OrderIn", 202, 403, 409, 422, 423, 503,
                                       params=[IDEMPOTENCY, WAIT])},
            "/api/v1/orders/{order_id}": _get("One order", 404, params=[ORDER_ID]),
            "/api/v1/orders/{order_id}/cancel": _post("Cancel one of our orders", None, 202,
                                                      403, 404, 409, 503, params=[ORDER_ID]),
            "/api/v1/orders/{order_id}/modify": _post("Modify one of our orders", "ModifyIn",
                                                      202, 403, 404, 409, 503,
                                                      params=[ORDER_ID]),
            "/api/v1/orders/preview": _post("What-if margin and commission", "OrderIn", 200,
                                            403, 422, 503, 504),
            "/api/v1/executions": _get("Fills with commissions"),
            "/api/v1/quote": _get("Snapshot quote", 404, 503, 504, params=[SYMBOL, SEC_TYPE]),
            "/api/v1/state": _get("Everything the dashboard shows"),
            "/api/v1/kill-switch": _get("Kill switch state", 403),
        },
    }
