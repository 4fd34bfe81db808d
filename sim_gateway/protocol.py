"""TWS API messages (sans-IO): decode client requests, encode server messages.

``decode_request(fields, version)`` turns one frame's fields into a frozen
request dataclass; the ``encode``-style functions turn the shared value
types of ``types.py`` into the field lists of server messages, gated on the
negotiated ``version`` (157..178, never 158). ``encode_request`` is the client
side, for round-trip tests and raw benchmark clients. Layouts follow
``/work/shared/reference/tws-api-protocol.md`` sections 2 and 3.

This module holds the dispatch tables (decoders by message id, encoders by request type) and
re-exports the message families, so ``protocol.X`` names every message:

* ``message_ids``: ``In`` and ``Out``; ``request_types``: the request dataclasses;
* ``request_decoders`` and ``order_decoding`` (placeOrder): client requests in;
* ``request_encoding``: client requests out (the client side);
* ``market_messages``, ``order_messages``, ``account_messages``: server messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import chart_messages, historical
from . import instrument_messages as im
from .account_messages import (
    account_download_end,
    account_summary,
    account_summary_end,
    account_update_multi,
    account_update_multi_end,
    account_update_time,
    account_value,
    pnl,
    pnl_single,
    portfolio_value,
    position,
    position_end,
)
from .codec import (
    DecodeError,
    FieldReader,
    ProtocolError,
    fmt_bool,
    parse_int,
)
from .market_messages import (
    contract_data,
    contract_data_end,
    current_time,
    error,
    managed_accounts,
    market_data_type,
    next_valid_id,
    tick_generic,
    tick_price,
    tick_req_params,
    tick_size,
    tick_snapshot_end,
    tick_string,
)
from .message_ids import Fields, In, Out
from .order_decoding import _decode_place_order
from .order_messages import (
    commission_report,
    completed_order,
    completed_orders_end,
    exec_details,
    exec_details_end,
    open_order,
    open_order_end,
    order_status,
)
from .request_decoders import (
    _decode_account_summary,
    _decode_account_updates,
    _decode_account_updates_multi,
    _decode_auto_open_orders,
    _decode_cancel_order,
    _decode_completed_orders,
    _decode_contract_details,
    _decode_executions,
    _decode_market_data_type,
    _decode_mkt_data,
    _decode_pnl,
    _decode_pnl_single,
    _decode_req_ids,
    _decode_start_api,
    _no_fields,
    _req_id_only,
    _RequestDecoder,
    _skip_groups,
)
from .request_encoding import (
    _encode_contract_details,
    _encode_executions,
    _encode_place_order,
    _encode_req_mkt_data,
)
from .request_types import (
    CancelAccountSummary,
    CancelAccountUpdatesMulti,
    CancelMktData,
    CancelOrder,
    CancelPnL,
    CancelPnLSingle,
    CancelPositions,
    PlaceOrder,
    ReqAccountSummary,
    ReqAccountUpdates,
    ReqAccountUpdatesMulti,
    ReqAllOpenOrders,
    ReqAutoOpenOrders,
    ReqCompletedOrders,
    ReqContractDetails,
    ReqCurrentTime,
    ReqExecutions,
    ReqGlobalCancel,
    ReqIds,
    ReqManagedAccts,
    ReqMarketDataType,
    ReqMktData,
    ReqOpenOrders,
    ReqPnL,
    ReqPnLSingle,
    ReqPositions,
    Request,
    StartApi,
    Unsupported,
)

# ---------------------------------------------------------------- dispatch

_DECODERS: dict[int, _RequestDecoder] = {
    In.START_API: _decode_start_api,
    In.REQ_IDS: _decode_req_ids,
    In.REQ_CURRENT_TIME: _no_fields(ReqCurrentTime),
    In.REQ_MANAGED_ACCTS: _no_fields(ReqManagedAccts),
    In.REQ_CONTRACT_DATA: _decode_contract_details,
    In.REQ_MKT_DATA: _decode_mkt_data,
    In.CANCEL_MKT_DATA: _req_id_only(CancelMktData),
    In.REQ_MARKET_DATA_TYPE: _decode_market_data_type,
    In.PLACE_ORDER: _decode_place_order,
    In.CANCEL_ORDER: _decode_cancel_order,
    In.REQ_OPEN_ORDERS: _no_fields(ReqOpenOrders),
    In.REQ_ALL_OPEN_ORDERS: _no_fields(ReqAllOpenOrders),
    In.REQ_AUTO_OPEN_ORDERS: _decode_auto_open_orders,
    In.REQ_COMPLETED_ORDERS: _decode_completed_orders,
    In.REQ_EXECUTIONS: _decode_executions,
    In.REQ_POSITIONS: _no_fields(ReqPositions),
    In.CANCEL_POSITIONS: _no_fields(CancelPositions),
    In.REQ_ACCT_DATA: _decode_account_updates,
    In.REQ_ACCOUNT_UPDATES_MULTI: _decode_account_updates_multi,
    In.CANCEL_ACCOUNT_UPDATES_MULTI: _req_id_only(CancelAccountUpdatesMulti),
    In.REQ_ACCOUNT_SUMMARY: _decode_account_summary,
    In.CANCEL_ACCOUNT_SUMMARY: _req_id_only(CancelAccountSummary),
    In.REQ_PNL: _decode_pnl,
    In.CANCEL_PNL: _req_id_only(CancelPnL, versioned=False),
    In.REQ_PNL_SINGLE: _decode_pnl_single,
    In.CANCEL_PNL_SINGLE: _req_id_only(CancelPnLSingle, versioned=False),
    In.REQ_GLOBAL_CANCEL: _no_fields(ReqGlobalCancel),
    **im.DECODERS,
    **historical.DECODERS,
    **chart_messages.DECODERS,
}

_KNOWN_IDS = frozenset(int(member) for member in In)

# Where unsupported messages carry their request id (field index incl. the msg id).
_UNSUPPORTED_REQ_ID_INDEX: dict[int, int] = {
    **dict.fromkeys(
        (10, 11, 21, 23, 25, 50, 51, 52, 53, 54, 55, 56, 57, 67, 68, 69, 70, 74, 75), 2
    ),
    **dict.fromkeys(
        (20, 22, 78, 79, 81, 83, 84, 86, 87, 88, 89, 90, 96, 97, 98, 100, 101, 102, 103, 104), 1
    ),
    19: 4,
}


def _unsupported(msg_id: int, fields: list[str]) -> Unsupported:
    """Name an unsupported message and find its request id if it has one."""
    name = In(msg_id).name if msg_id in _KNOWN_IDS else f"UNKNOWN_{msg_id}"
    index = _UNSUPPORTED_REQ_ID_INDEX.get(msg_id)
    text = fields[index] if index is not None and index < len(fields) else ""
    req_id = int(text) if text.isascii() and text.removeprefix("-").isdigit() else -1
    return Unsupported(msg_id, name, req_id)


def decode_request(fields: list[str], version: int) -> Request:
    """Decode one client message; malformed input raises DecodeError."""
    if not fields or not fields[0]:
        raise DecodeError("message without an id")
    msg_id = parse_int(fields[0], "message id")
    decoder = _DECODERS.get(msg_id)
    if decoder is None:
        return _unsupported(msg_id, fields)
    reader = FieldReader(fields, In(msg_id).name)
    request = decoder(reader, version)
    reader.finish()
    return request


_ENCODERS: dict[type, Callable[[Any, int], Fields]] = {
    StartApi: lambda q, v: ["71", "2", str(q.client_id), q.optional_capabilities],
    ReqIds: lambda q, v: ["8", "1", str(q.num_ids)],
    ReqCurrentTime: lambda q, v: ["49", "1"],
    ReqManagedAccts: lambda q, v: ["17", "1"],
    ReqContractDetails: _encode_contract_details,
    ReqMktData: _encode_req_mkt_data,
    CancelMktData: lambda q, v: ["2", "2", str(q.req_id)],
    ReqMarketDataType: lambda q, v: ["59", "1", str(q.market_data_type)],
    PlaceOrder: _encode_place_order,
    CancelOrder: lambda q, v: ["4", "1", str(q.order_id)] + ([""] if v >= 169 else []),
    ReqOpenOrders: lambda q, v: ["5", "1"],
    ReqAllOpenOrders: lambda q, v: ["16", "1"],
    ReqAutoOpenOrders: lambda q, v: ["15", "1", fmt_bool(q.auto_bind)],
    ReqCompletedOrders: lambda q, v: ["99", fmt_bool(q.api_only)],
    ReqExecutions: _encode_executions,
    ReqPositions: lambda q, v: ["61", "1"],
    CancelPositions: lambda q, v: ["64", "1"],
    ReqAccountUpdates: lambda q, v: ["6", "2", fmt_bool(q.subscribe), q.account],
    ReqAccountUpdatesMulti: lambda q, v: [
        "76",
        "1",
        str(q.req_id),
        q.account,
        q.model_code,
        fmt_bool(q.ledger_and_nlv),
    ],  # fmt: skip
    CancelAccountUpdatesMulti: lambda q, v: ["77", "1", str(q.req_id)],
    ReqAccountSummary: lambda q, v: ["62", "1", str(q.req_id), q.group, ",".join(q.tags)],
    CancelAccountSummary: lambda q, v: ["63", "1", str(q.req_id)],
    ReqPnL: lambda q, v: ["92", str(q.req_id), q.account, q.model_code],
    CancelPnL: lambda q, v: ["93", str(q.req_id)],
    ReqPnLSingle: lambda q, v: ["94", str(q.req_id), q.account, q.model_code, str(q.con_id)],
    CancelPnLSingle: lambda q, v: ["95", str(q.req_id)],
    ReqGlobalCancel: lambda q, v: ["58", "1"],
    **im.ENCODERS,
    **historical.ENCODERS,
    **chart_messages.ENCODERS,
}


def encode_request(req: Request, version: int) -> Fields:
    """Client side: the fields a client sends for ``req`` at ``version``."""
    encoder = _ENCODERS.get(type(req))
    if encoder is None:
        raise ProtocolError(f"cannot encode {type(req).__name__}")
    return encoder(req, version)


# What other modules use as ``protocol.X``: the message families re-exported.
__all__ = [
    "CancelAccountSummary",
    "CancelAccountUpdatesMulti",
    "CancelMktData",
    "CancelOrder",
    "CancelPnL",
    "CancelPnLSingle",
    "CancelPositions",
    "DecodeError",
    "Fields",
    "In",
    "Out",
    "PlaceOrder",
    "ReqAccountSummary",
    "ReqAccountUpdates",
    "ReqAccountUpdatesMulti",
    "ReqAllOpenOrders",
    "ReqAutoOpenOrders",
    "ReqCompletedOrders",
    "ReqContractDetails",
    "ReqCurrentTime",
    "ReqExecutions",
    "ReqGlobalCancel",
    "ReqIds",
    "ReqManagedAccts",
    "ReqMarketDataType",
    "ReqMktData",
    "ReqOpenOrders",
    "ReqPnL",
    "ReqPnLSingle",
    "ReqPositions",
    "Request",
    "StartApi",
    "Unsupported",
    "_skip_groups",
    "account_download_end",
    "account_summary",
    "account_summary_end",
    "account_update_multi",
    "account_update_multi_end",
    "account_update_time",
    "account_value",
    "commission_report",
    "completed_order",
    "completed_orders_end",
    "contract_data",
    "contract_data_end",
    "current_time",
    "decode_request",
    "encode_request",
    "error",
    "exec_details",
    "exec_details_end",
    "managed_accounts",
    "market_data_type",
    "next_valid_id",
    "open_order",
    "open_order_end",
    "order_status",
    "pnl",
    "pnl_single",
    "portfolio_value",
    "position",
    "position_end",
    "tick_generic",
    "tick_price",
    "tick_req_params",
    "tick_size",
    "tick_snapshot_end",
    "tick_string",
]
