"""Option chain endpoints (blueprint ``derivatives`` under /api/v1/options).

Both ask the broker through the reader connection (a round trip each, like /quote), in the
API's one error shape: a bad parameter is a 400 naming it, an unknown symbol or one without
listed options a 404.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from flask import Blueprint, Response, jsonify, request
from ib_async import RequestError
from pydantic import BaseModel, ConfigDict, Field, field_validator

import api
import options_data
from ib_connection import NotConnectedError
from openapi import documented
from schemas import EXPIRY_PATTERN, SYMBOL_PATTERN

bp = Blueprint("options", __name__, url_prefix="/api/v1/options")
bp.register_error_handler(api.ApiError, api._on_api_error)
bp.register_error_handler(NotConnectedError, api._on_not_connected)
bp.register_error_handler(TimeoutError, api._on_timeout)
AROUND_DEFAULT, AROUND_MAX = 8, 40


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN, description="the underlying stock")]

    @field_validator("symbol", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class ChainQuery(_Query):
    """GET /options/chain."""


class QuotesQuery(_Query):
    """GET /options/quotes."""

    expiry: Annotated[str, Field(pattern=EXPIRY_PATTERN, min_length=8, max_length=8,
                                 description="YYYYMMDD, one of the chain's expirations")]
    strikes: Annotated[int, Field(ge=1, le=AROUND_MAX, description=(
        "strikes each side of the one nearest the underlying's price"))] = AROUND_DEFAULT


@bp.get("/chain")
@documented(options_data.Chain, 400, 404, 503, 504, query=ChainQuery)
def chain() -> Response:
    """Expiries and strikes of an underlying's options, per trading class
    (reqSecDefOptParams: one broker round trip on the reader's loop)."""
    query = api._validate(ChainQuery, request.args.to_dict())
    try:
        with api._long_call(required=True):
            answer = api.services().connector.option_chain(query.symbol)
    except (LookupError, RequestError) as exc:
        raise api.ApiError(404, "unknown_symbol", str(exc), "symbol") from None
    return jsonify(dataclasses.asdict(answer))


@bp.get("/quotes")
@documented(options_data.Board, 400, 404, 503, 504, query=QuotesQuery)
def quotes() -> Response:
    """Calls | strike | puts of one expiry around the money: bid/ask/last, implied volatility
    and greeks of each option (snapshot quotes on the reader's loop)."""
    query = api._validate(QuotesQuery, request.args.to_dict())
    try:
        with api._long_call(required=True):
            board = api.services().connector.option_quotes(query.symbol, query.expiry,
                                                             query.strikes)
    except options_data.BadExpiry as exc:
        raise api.ApiError(400, "validation_error", f"expiry: {exc}", "expiry") from None
    except (LookupError, RequestError) as exc:
        raise api.ApiError(404, "unknown_symbol", str(exc), "symbol") from None
    return jsonify(dataclasses.asdict(board))
