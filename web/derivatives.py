"""Option chain and futures endpoints (blueprint ``derivatives``: /api/v1/options/...,
/api/v1/futures/...).

Each asks the broker through the reader connection (a round trip each, like /quote), in the
API's one error shape: a bad parameter is a 400 naming it, an unknown symbol or one without
listed options or futures a 404.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from flask import Blueprint, Response, jsonify
from ib_async import RequestError
from pydantic import BaseModel, ConfigDict, Field, field_validator

import options_data
from instruments import FutureMonth
from openapi import documented
from schemas import EXPIRY_PATTERN, SYMBOL_PATTERN
from web import common

bp = Blueprint("derivatives", __name__, url_prefix="/api/v1")
common.answer_gateway_errors(bp)
AROUND_DEFAULT, AROUND_MAX = 8, 40


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN, description="the underlying stock")]

    @field_validator("symbol", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class FuturesQuery(_Query):
    """GET /futures/contracts."""

    symbol: Annotated[
        str, Field(pattern=SYMBOL_PATTERN, description="the futures product, e.g. ES")
    ]
    exchange: (
        Annotated[
            str,
            Field(
                pattern=r"^[A-Z][A-Z0-9.]{0,15}$",
                description="e.g. CME; every exchange if left out",
            ),
        ]
        | None
    ) = None

    @field_validator("exchange", mode="before")
    @classmethod
    def _upper_exchange(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class FuturesOut(BaseModel):
    """The listed contract months of a futures product, nearest first."""

    model_config = ConfigDict(extra="forbid")

    symbol: str
    contracts: list[FutureMonth]


class ChainQuery(_Query):
    """GET /options/chain."""


class QuotesQuery(_Query):
    """GET /options/quotes."""

    expiry: Annotated[
        str,
        Field(
            pattern=EXPIRY_PATTERN,
            min_length=8,
            max_length=8,
            description="YYYYMMDD, one of the chain's expirations",
        ),
    ]
    strikes: Annotated[
        int,
        Field(
            ge=1,
            le=AROUND_MAX,
            description=("strikes each side of the one nearest the underlying's price"),
        ),
    ] = AROUND_DEFAULT


@bp.get("/options/chain")
@documented(options_data.Chain, 400, 404, 503, 504, query=ChainQuery)
def chain() -> Response:
    """Expiries and strikes of an underlying's options, per trading class
    (reqSecDefOptParams: one broker round trip on the reader's loop)."""
    query = common._query(ChainQuery)
    try:
        with common._long_call(required=True):
            answer = common.services().connector.option_chain(query.symbol)
    except (LookupError, RequestError) as exc:
        raise common.ApiError(404, "unknown_symbol", str(exc), "symbol") from None
    return common._json(dataclasses.asdict(answer))  # its time as ISO 8601 (wire.py)


@bp.get("/options/quotes")
@documented(options_data.Board, 400, 404, 503, 504, query=QuotesQuery)
def quotes() -> Response:
    """Calls | strike | puts of one expiry around the money: bid/ask/last, implied volatility
    and greeks of each option (snapshot quotes on the reader's loop)."""
    query = common._query(QuotesQuery)
    try:
        with common._long_call(required=True):
            board = common.services().connector.option_quotes(
                query.symbol, query.expiry, query.strikes
            )
    except options_data.BadExpiry as exc:
        raise common.ApiError(400, "validation_error", f"expiry: {exc}", "expiry") from None
    except (LookupError, RequestError) as exc:
        raise common.ApiError(404, "unknown_symbol", str(exc), "symbol") from None
    return common._json(dataclasses.asdict(board))


@bp.get("/futures/contracts")
@documented(FuturesOut, 400, 404, 503, 504, query=FuturesQuery)
def futures() -> Response:
    """The contract months of a futures product (contract details: one broker round trip)."""
    query = common._query(FuturesQuery)
    try:
        with common._long_call(required=True):
            months = common.services().connector.future_months(query.symbol, query.exchange or "")
    except (LookupError, RequestError) as exc:
        raise common.ApiError(404, "unknown_symbol", str(exc), "symbol") from None
    return jsonify(
        {"symbol": query.symbol, "contracts": [dataclasses.asdict(month) for month in months]}
    )
