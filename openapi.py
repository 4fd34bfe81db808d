"""The OpenAPI 3.1 document of the JSON API (GET /api/v1/openapi.json), generated from the routes.

Each API view says what it takes and answers with ``@documented(...)``: the pydantic models it
validates (query, body) and the models of its answers. ``document(app)`` walks the app's
``url_map`` and builds the document with apispec, so every route is listed with the schemas the
server really uses. Routes of the browser pages are the only ones left out (``NOT_API``).
"""

from __future__ import annotations

import http
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, is_dataclass
from typing import Any, TypeVar

from apispec import APISpec
from flask import Flask
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from schemas_out import ErrorOut
from wire import wire_schema

F = TypeVar("F", bound=Callable[..., Any])
API_PREFIX = "/api/v1/"
# Browser pages and their files, not the JSON API: HTML (or redirects) for people, no schema.
NOT_API = {"/", "/login", "/logout", "/static/<path:filename>"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
ETAG_HEADER = {
    "ETag": {
        "description": "weak validator of the data version; send it back in "
        "If-None-Match to get 304 while nothing changed",
        "required": True,
        "schema": {"type": "string"},
    }
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "an ETag of an earlier answer: 304 without a body while the "
    "data has not changed",
    "schema": {"type": "string"},
}
BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}
PATH_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
ORDER_ID = {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,64}$"}


class ComponentNameClash(ValueError):
    """Two different models under one component name (raised while building the document)."""


@dataclass(frozen=True)
class Doc:
    """What one view takes and answers (read by ``document``)."""

    ok: int = 200
    response: Any = None  # a pydantic model or dataclass; None: no JSON body
    media: str = "application/json"
    errors: tuple[int, ...] = ()
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    headers: tuple[dict[str, Any], ...] = ()
    etag: bool = False
    public: bool = False
    extra_ok: dict[int, str] = field(default_factory=dict)  # more success codes: description
    # statuses answered with the response model, not the error shape, and no ETag (/health's
    # 503 says why in its own body): description
    same_body: dict[int, str] = field(default_factory=dict)


def documented(
    response: Any = None, *errors: int, ok: int = 200, **options: Any
) -> Callable[[F], F]:
    """Attach the view's OpenAPI description (see ``Doc``)."""
    doc = Doc(ok=ok, response=response, errors=tuple(errors), **options)

    def mark(view: F) -> F:
        view.__openapi__ = doc  # type: ignore[attr-defined]
        return view

    return mark


def api_rules(app: Flask) -> list[Any]:
    """The url_map rules that belong to the JSON API (everything but ``NOT_API``)."""
    return [r for r in app.url_map.iter_rules() if r.rule not in NOT_API]


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every API route of ``app``."""
    spec = APISpec(
        title="IB Dashboard API",
        version="1.0.0",
        openapi_version="3.1.0",
        info={
            "description": "Read the account and place orders through the dashboard's queued "
            "order handler. Authenticate with a bearer token. Every error has "
            "the shape of ErrorOut."
        },
        servers=[{"url": "/"}],
        security=[{"bearer": []}],
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    views = [(rule, app.view_functions[rule.endpoint]) for rule in api_rules(app)]
    docs = [(rule, view, getattr(view, "__openapi__", None)) for rule, view in views]
    for name, schema in _component_schemas([d for _, _, d in docs if d]).items():
        spec.components.schema(name, schema)
    paths: dict[str, dict[str, Any]] = {}
    for rule, view, doc in docs:
        if doc is None:
            continue  # tests/test_openapi.py fails on an undocumented API route
        path = PATH_ARG.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule, view, doc)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _component_schemas(docs: Sequence[Doc]) -> dict[str, Any]:
    """JSON schemas of every model the views name, with shared definitions hoisted.
    ComponentNameClash when two different models would share a component name."""
    inputs = {d.body for d in docs if d.body}
    outputs = {d.response for d in docs if _named(d.response)} | {ErrorOut}
    _refuse_clashes(inputs | outputs)
    adapters: list[tuple[tuple[type[BaseModel], str], JsonSchemaMode, TypeAdapter[Any]]]
    adapters = [((t, "validation"), "validation", TypeAdapter(t)) for t in inputs]
    adapters += [((t, "serialization"), "serialization", TypeAdapter(t)) for t in outputs]
    _, defs = TypeAdapter.json_schemas(adapters, ref_template="#/components/schemas/{model}")
    # pydantic names a clash of nested models after their modules (``api__Row``): refuse it too
    qualified = sorted(name for name in defs.get("$defs", {}) if "__" in name)
    if qualified:
        raise ComponentNameClash(
            f"OpenAPI component names clash between models of different "
            f"modules ({', '.join(qualified)}): rename one of each"
        )
    # times are epoch seconds inside the app and ISO 8601 text on the wire (wire.to_wire)
    return {name: wire_schema(_standard(schema)) for name, schema in defs.get("$defs", {}).items()}


def _refuse_clashes(kinds: set[Any]) -> None:
    """Each component is named after its class (``_schema``): two classes of one name would
    leave one of them undocumented or pointed at the other."""
    by_name: dict[str, list[Any]] = {}
    for kind in kinds:
        by_name.setdefault(kind.__name__, []).append(kind)
    for name, same in sorted(by_name.items()):
        if len(same) > 1:
            where = sorted(f"{k.__module__}.{k.__qualname__}" for k in same)
            raise ComponentNameClash(
                f"OpenAPI component {name!r} would name {len(same)} "
                f"different models ({', '.join(where)}): rename one"
            )


def _standard(schema: Any) -> Any:
    """pydantic writes the bounds of a union (int | float) as its own keywords (gt, le ...) next
    to the anyOf: move them into each member as JSON Schema's (exclusiveMinimum, maximum ...)."""
    if isinstance(schema, list):
        return [_standard(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _standard(v) for k, v in schema.items()}
    bounds = {BOUNDS[k]: out.pop(k) for k in list(out) if k in BOUNDS}
    if bounds:
        for member in out.get("anyOf", []):
            if member.get("type") in ("integer", "number"):
                member.update(bounds)
    return out


def _named(kind: Any) -> bool:
    """A model or dataclass (a component of its own), not a plain type such as dict."""
    return hasattr(kind, "model_fields") or is_dataclass(kind)


def _schema(kind: Any) -> dict[str, Any]:
    if _named(kind):
        return {"$ref": f"#/components/schemas/{kind.__name__}"}
    return TypeAdapter(kind).json_schema()


def _operation(rule: Any, view: Callable[..., Any], doc: Doc) -> dict[str, Any]:
    summary, _, description = (view.__doc__ or view.__name__).strip().partition("\n")
    op: dict[str, Any] = {
        "operationId": view.__name__,
        "summary": summary.strip(),
        "parameters": _parameters(rule, doc),
        "responses": _responses(doc),
    }
    if description.strip():
        op["description"] = " ".join(description.split())
    if doc.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(doc.body)}},
        }
    if doc.public:
        op["security"] = []
    return op


def _parameters(rule: Any, doc: Doc) -> list[dict[str, Any]]:
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": ORDER_ID if name == "order_id" else {"type": "string"},
        }
        for name in sorted(rule.arguments)
    ]
    if doc.query is not None:
        schema = doc.query.model_json_schema()
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            param = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": _standard(_without_null(prop)),
            }
            if prop.get("description"):
                param["description"] = prop["description"]
            params.append(param)
    params.extend(doc.headers)
    if doc.etag:
        params.append(IF_NONE_MATCH)
    return params


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter is absent, never null."""
    out = {k: v for k, v in schema.items() if k not in ("title", "default")}
    options = [s for s in out.pop("anyOf", []) if s.get("type") != "null"]
    if len(options) == 1:
        out.update(options[0])
    elif options:
        out["anyOf"] = options
    return out


def _responses(doc: Doc) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": http.HTTPStatus(doc.ok).phrase}
    if doc.response is not None:
        ok["content"] = {doc.media: {"schema": _schema(doc.response)}}
    if doc.etag:
        ok["headers"] = ETAG_HEADER
    out: dict[str, Any] = {str(doc.ok): ok}
    for code, text in doc.extra_ok.items():
        out[str(code)] = {**ok, "description": text}
    for code, text in doc.same_body.items():
        out[str(code)] = {"description": text, "content": ok["content"]}
    if doc.etag:
        out["304"] = {
            "description": "Not Modified: the data has not changed since that ETag",
            "headers": ETAG_HEADER,
        }
    codes = set(doc.errors) | ({400} if doc.query or doc.body else set())
    if not doc.public:
        codes.add(401)
    for code in sorted(codes):
        out[str(code)] = {
            "description": http.HTTPStatus(code).phrase,
            "content": {"application/json": {"schema": ERROR_REF}},
        }
    out["default"] = {
        "description": "any other error",
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    return out
