"""Encoders of client requests (the client side), for round-trip tests and raw benchmark
clients; ``protocol.encode_request`` picks them by request type.
"""

from __future__ import annotations

from .codec import (
    fmt_bool,
    fmt_price,
    fmt_qty,
)
from .message_ids import Fields
from .order_decoding import _PEG_BENCH, _PEG_BEST, _PEG_MID
from .request_types import PlaceOrder, ReqContractDetails, ReqExecutions, ReqMktData
from .types import (
    ContractQuery,
    OrderRequest,
)

# ================================================================ request encoding (client side)


def _contract_fields(c: ContractQuery) -> Fields:
    return [
        str(c.con_id), c.symbol, c.sec_type, c.last_trade_date, fmt_price(c.strike, "0.0"), c.right,
        c.multiplier, c.exchange, c.primary_exchange, c.currency, c.local_symbol, c.trading_class,
    ]  # fmt: skip


def _encode_place_order(req: PlaceOrder, version: int) -> Fields:
    """ib_async 2.1.0's placeOrder layout; fields OrderRequest lacks get ib_async's defaults."""
    o = req.order
    bag = ["0", "0", "0"] if o.contract.sec_type == "BAG" else []
    return [
        "3", str(o.order_id), *_contract_fields(o.contract), "", "",
        o.action, fmt_qty(o.total_quantity), o.order_type, fmt_price(o.lmt_price), fmt_price(o.aux_price),
        o.tif, o.oca_group, o.account, "O", "0", o.order_ref, fmt_bool(o.transmit), str(o.parent_id),
        "0", "0", "0", "0", fmt_bool(o.outside_rth), "0", *bag,
        "", "0.0", "", "", "", "", "", *([""] if version < 177 else []),
        "", "0", "", "-1", str(o.oca_type), "", "", "0", "", "",
        fmt_bool(o.e_trade_only), fmt_bool(o.firm_quote_only), "", "0", "", "", "", "", "", "0",
        "", "", "", "",
        "0", "", fmt_price(o.trail_stop_price), fmt_price(o.trailing_percent), "", "", "",
        "", "", "", "",
        "0", "", "", "0", "0", "",
        "", fmt_bool(o.what_if), "", "0", "0", "0", *(["0", "0", "", "", ""] if o.order_type in _PEG_BENCH else []),
        "0", "", "", "", "", "", "", "0", "", "", "", "", "", "", "", "", "0", "0", "0", "0",
        *[value for gate, value in ((158, ""), (160, ""), (162, "0"), (166, ""), (169, "")) if version >= gate],
        *_v170_order_fields(o, version),
    ]  # fmt: skip


def _v170_order_fields(o: OrderRequest, version: int) -> Fields:
    """minTradeQty (IBKRATS) and the PEG BEST / PEG MID offsets, all left empty."""
    if version < 170:
        return []
    ats = [""] if o.contract.exchange == "IBKRATS" else []
    pegged = 2 if o.order_type in _PEG_BEST | _PEG_MID else 0
    return ats + [""] * pegged


def _encode_req_mkt_data(req: ReqMktData, version: int) -> Fields:
    bag = ["0"] if req.contract.sec_type == "BAG" else []
    return [
        "1", "11", str(req.req_id), *_contract_fields(req.contract), *bag, "0",
        req.generic_ticks, fmt_bool(req.snapshot), fmt_bool(req.regulatory_snapshot), "",
    ]  # fmt: skip


def _encode_contract_details(req: ReqContractDetails, version: int) -> Fields:
    tail = ["0", "", ""] + ([""] if version >= 176 else [])
    return ["9", "8", str(req.req_id), *_contract_fields(req.contract), *tail]


def _encode_executions(req: ReqExecutions, version: int) -> Fields:
    f = req.filter
    return [
        "7",
        "3",
        str(req.req_id),
        str(f.client_id),
        f.account,
        f.time,
        f.symbol,
        f.sec_type,
        f.exchange,
        f.side,
    ]
