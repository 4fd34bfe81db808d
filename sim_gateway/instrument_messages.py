"""TWS API messages of the instrument features (sans-IO): option chains and computations, market
depth and market rules.

Kept out of ``protocol.py`` (which registers these decoders and encoders in its tables) so that
module stays about orders and accounts. Layouts at the negotiated versions 157..178, checked
field by field against ib_async 2.1.0's and ibapi 9.81's decoders and clients:

* reqSecDefOptParams ``[78, reqId, symbol, futFopExchange, secType, conId]`` →
  ``[75, reqId, exchange, underConId, tradingClass, multiplier, n, exp…, m, strike…]`` per
  exchange, then ``[76, reqId]``;
* tickOptionComputation ``[21, reqId, tickType, tickAttrib, impliedVol, delta, optPrice,
  pvDividend, gamma, vega, theta, undPrice]`` (no version field from v156 on);
* reqMktDepth ``[10, 5, reqId, <12-field contract>, numRows, isSmartDepth, options]``,
  cancelMktDepth ``[11, 1, reqId, isSmartDepth]`` → updateMktDepth ``[12, 1, reqId, position,
  operation, side, price, size]`` (exact 8 for ibapi, integral size) or updateMktDepthL2
  ``[13, 1, reqId, position, marketMaker, operation, side, price, size, isSmartDepth]``;
* reqMktDepthExchanges ``[82]`` → ``[80, n, (exchange, secType, listingExch, serviceDataType,
  aggGroup)…]``;
* reqMarketRule ``[91, id]`` → ``[93, id, n, (lowEdge, increment)…]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .codec import FieldReader, fmt_bool, fmt_price, fmt_qty, read_contract
from .depth import DepthOp
from .derivatives import Chain
from .market_rules import Increments
from .options_model import Greeks
from .types import ContractQuery

Fields = list[str]

REQ_MKT_DEPTH, CANCEL_MKT_DEPTH, REQ_SEC_DEF_OPT_PARAMS = 10, 11, 78
REQ_MKT_DEPTH_EXCHANGES, REQ_MARKET_RULE = 82, 91


@dataclass(frozen=True)
class ReqSecDefOptParams:
    req_id: int
    underlying_symbol: str
    fut_fop_exchange: str
    underlying_sec_type: str
    underlying_con_id: int


@dataclass(frozen=True)
class ReqMktDepth:
    req_id: int
    contract: ContractQuery
    num_rows: int
    is_smart_depth: bool = False


@dataclass(frozen=True)
class CancelMktDepth:
    req_id: int
    is_smart_depth: bool = False


@dataclass(frozen=True)
class ReqMktDepthExchanges:
    pass


@dataclass(frozen=True)
class ReqMarketRule:
    market_rule_id: int


InstrumentRequest = (
    ReqSecDefOptParams | ReqMktDepth | CancelMktDepth | ReqMktDepthExchanges | ReqMarketRule
)

# ================================================================ request decoding


def _decode_sec_def_opt_params(r: FieldReader, version: int) -> ReqSecDefOptParams:
    return ReqSecDefOptParams(
        r.read_int("reqId"), r.read_str("underlyingSymbol"), r.read_str("futFopExchange"),
        r.read_str("underlyingSecType"), r.read_int("underlyingConId"),
    )  # fmt: skip


def _decode_mkt_depth(r: FieldReader, version: int) -> ReqMktDepth:
    r.skip(1, "version")
    req_id, contract = r.read_int("reqId"), read_contract(r)
    request = ReqMktDepth(req_id, contract, r.read_int("numRows"), r.read_bool("isSmartDepth"))
    r.skip(1, "mktDepthOptions")
    return request


def _decode_cancel_mkt_depth(r: FieldReader, version: int) -> CancelMktDepth:
    r.skip(1, "version")
    return CancelMktDepth(r.read_int("reqId"), r.read_bool("isSmartDepth"))


def _decode_depth_exchanges(r: FieldReader, version: int) -> ReqMktDepthExchanges:
    return ReqMktDepthExchanges()


def _decode_market_rule(r: FieldReader, version: int) -> ReqMarketRule:
    return ReqMarketRule(r.read_int("marketRuleId"))


DECODERS: dict[int, Callable[[FieldReader, int], InstrumentRequest]] = {
    REQ_SEC_DEF_OPT_PARAMS: _decode_sec_def_opt_params,
    REQ_MKT_DEPTH: _decode_mkt_depth,
    CANCEL_MKT_DEPTH: _decode_cancel_mkt_depth,
    REQ_MKT_DEPTH_EXCHANGES: _decode_depth_exchanges,
    REQ_MARKET_RULE: _decode_market_rule,
}

# ================================================================ request encoding (client side)


def _contract_fields(c: ContractQuery) -> Fields:
    return [
        str(c.con_id), c.symbol, c.sec_type, c.last_trade_date, fmt_price(c.strike, "0.0"), c.right,
        c.multiplier, c.exchange, c.primary_exchange, c.currency, c.local_symbol, c.trading_class,
    ]  # fmt: skip


ENCODERS: dict[type, Callable[[Any, int], Fields]] = {
    ReqSecDefOptParams: lambda q, v: [
        "78",
        str(q.req_id),
        q.underlying_symbol,
        q.fut_fop_exchange,
        q.underlying_sec_type,
        str(q.underlying_con_id),
    ],  # fmt: skip
    ReqMktDepth: lambda q, v: [
        "10",
        "5",
        str(q.req_id),
        *_contract_fields(q.contract),
        str(q.num_rows),
        fmt_bool(q.is_smart_depth),
        "",
    ],  # fmt: skip
    CancelMktDepth: lambda q, v: ["11", "1", str(q.req_id), fmt_bool(q.is_smart_depth)],
    ReqMktDepthExchanges: lambda q, v: ["82"],
    ReqMarketRule: lambda q, v: ["91", str(q.market_rule_id)],
}

# ================================================================ server messages


def _strike(value: float) -> str:
    return fmt_price(value, "0.0")


def sec_def_opt_params(req_id: int, chain: Chain) -> Fields:
    """securityDefinitionOptionParameter (75): one exchange's expirations and strikes."""
    return [
        "75", str(req_id), chain.exchange, str(chain.under_con_id), chain.trading_class, chain.multiplier,
        str(len(chain.expirations)), *chain.expirations, str(len(chain.strikes)), *map(_strike, chain.strikes),
    ]  # fmt: skip


def sec_def_opt_params_end(req_id: int) -> Fields:
    return ["76", str(req_id)]


def tick_option_computation(req_id: int, tick_type: int, g: Greeks, attrib: int = 0) -> Fields:
    """tickOptionComputation (21); attrib 0 = return-based, 1 = price-based volatility."""
    values = (g.implied_vol, g.delta, g.price, g.pv_dividend, g.gamma, g.vega, g.theta, g.und_price)
    return [
        "21",
        str(req_id),
        str(tick_type),
        str(attrib),
        *(fmt_price(value, "0.0") for value in values),
    ]


def market_depth(req_id: int, op: DepthOp) -> Fields:
    """updateMktDepth (12): exactly 8 fields, integral size (ibapi 9.81 decodes it as int)."""
    return [
        "12", "1", str(req_id), str(op.position), str(op.operation), str(op.side),
        fmt_price(op.price, "0.0"), fmt_qty(op.size),
    ]  # fmt: skip


def market_depth_l2(req_id: int, op: DepthOp, is_smart_depth: bool) -> Fields:
    """updateMktDepthL2 (13): market maker (SMART depth: the venue) and isSmartDepth."""
    return [
        "13", "1", str(req_id), str(op.position), op.market_maker, str(op.operation), str(op.side),
        fmt_price(op.price, "0.0"), fmt_qty(op.size), fmt_bool(is_smart_depth),
    ]  # fmt: skip


def mkt_depth_exchanges(rows: Sequence[tuple[str, str, str, str]]) -> Fields:
    """mktDepthExchanges (80); aggGroup is IB's UNSET integer ("2147483647") when not grouped."""
    fields = ["80", str(len(rows))]
    for exchange, sec_type, listing, service in rows:
        fields += [exchange, sec_type, listing, service, "2147483647"]
    return fields


def market_rule(market_rule_id: int, increments: Increments) -> Fields:
    """marketRule (93): (lowEdge, increment) pairs."""
    fields = ["93", str(market_rule_id), str(len(increments))]
    for low_edge, increment in increments:
        fields += [fmt_price(low_edge, "0.0"), fmt_price(increment, "0.0")]
    return fields
