"""Decoders of the client requests (sessions, contracts, market data, orders queries,
accounts, P&L); ``order_decoding`` has placeOrder's; ``protocol`` registers them by message id.
"""

from __future__ import annotations

from collections.abc import Callable

from .codec import (
    FieldReader,
    read_contract,
)
from .request_types import (
    CancelOrder,
    ReqAccountSummary,
    ReqAccountUpdates,
    ReqAccountUpdatesMulti,
    ReqAutoOpenOrders,
    ReqCompletedOrders,
    ReqContractDetails,
    ReqExecutions,
    ReqIds,
    ReqMarketDataType,
    ReqMktData,
    ReqPnL,
    ReqPnLSingle,
    Request,
    StartApi,
)
from .types import (
    ExecutionFilter,
)

_RequestDecoder = Callable[[FieldReader, int], Request]

# ================================================================ request decoding


def _skip_groups(r: FieldReader, name: str, width: int) -> None:
    """A count followed by ``count`` groups of ``width`` fields."""
    r.skip(r.read_count(name, width) * width, name)


def _no_fields(cls: type) -> _RequestDecoder:
    """Decoder of ``[id, version]`` messages."""

    def decode(r: FieldReader, version: int) -> Request:
        r.skip(1, "version")
        return cls()

    return decode


def _req_id_only(cls: type, versioned: bool = True) -> _RequestDecoder:
    """Decoder of ``[id, version, reqId]`` (or ``[id, reqId]``) messages."""

    def decode(r: FieldReader, version: int) -> Request:
        if versioned:
            r.skip(1, "version")
        return cls(r.read_int("reqId"))

    return decode


def _decode_start_api(r: FieldReader, version: int) -> StartApi:
    r.skip(1, "version")
    return StartApi(r.read_int("clientId"), r.read_str("optionalCapabilities"))


def _decode_req_ids(r: FieldReader, version: int) -> ReqIds:
    r.skip(1, "version")
    return ReqIds(r.read_int("numIds"))


def _decode_contract_details(r: FieldReader, version: int) -> ReqContractDetails:
    r.skip(1, "version")
    req_id, contract = r.read_int("reqId"), read_contract(r)
    r.skip(3 + int(version >= 176), "includeExpired..issuerId")
    return ReqContractDetails(req_id, contract)


def _decode_mkt_data(r: FieldReader, version: int) -> ReqMktData:
    r.skip(1, "version")
    req_id, contract = r.read_int("reqId"), read_contract(r)
    if contract.sec_type == "BAG":
        _skip_groups(r, "comboLegsCount", 4)
    if r.read_bool("deltaNeutralContractPresent"):
        r.skip(3, "deltaNeutralContract")
    request = ReqMktData(
        req_id,
        contract,
        generic_ticks=r.read_str("genericTickList"),
        snapshot=r.read_bool("snapshot"),
        regulatory_snapshot=r.read_bool("regulatorySnapshot"),
    )
    r.skip(1, "mktDataOptions")
    return request


def _decode_market_data_type(r: FieldReader, version: int) -> ReqMarketDataType:
    r.skip(1, "version")
    return ReqMarketDataType(r.read_int("marketDataType"))


def _decode_cancel_order(r: FieldReader, version: int) -> CancelOrder:
    r.skip(1, "version")
    order_id = r.read_int("orderId")
    r.skip(int(version >= 169), "manualOrderCancelTime")
    return CancelOrder(order_id)


def _decode_auto_open_orders(r: FieldReader, version: int) -> ReqAutoOpenOrders:
    r.skip(1, "version")
    return ReqAutoOpenOrders(r.read_bool("autoBind"))


def _decode_completed_orders(r: FieldReader, version: int) -> ReqCompletedOrders:
    return ReqCompletedOrders(r.read_bool("apiOnly"))


def _decode_executions(r: FieldReader, version: int) -> ReqExecutions:
    r.skip(1, "version")
    req_id = r.read_int("reqId")
    return ReqExecutions(
        req_id,
        ExecutionFilter(
            client_id=r.read_int("clientId"),
            account=r.read_str("acctCode"),
            time=r.read_str("time"),
            symbol=r.read_str("symbol"),
            sec_type=r.read_str("secType"),
            exchange=r.read_str("exchange"),
            side=r.read_str("side"),
        ),
    )


def _decode_account_updates(r: FieldReader, version: int) -> ReqAccountUpdates:
    r.skip(1, "version")
    return ReqAccountUpdates(r.read_bool("subscribe"), r.read_str("acctCode"))


def _decode_account_updates_multi(r: FieldReader, version: int) -> ReqAccountUpdatesMulti:
    r.skip(1, "version")
    return ReqAccountUpdatesMulti(
        r.read_int("reqId"),
        r.read_str("account"),
        r.read_str("modelCode"),
        r.read_bool("ledgerAndNLV"),
    )


def _decode_account_summary(r: FieldReader, version: int) -> ReqAccountSummary:
    r.skip(1, "version")
    req_id, group = r.read_int("reqId"), r.read_str("groupName")
    tags = tuple(tag.strip() for tag in r.read_str("tags").split(",") if tag.strip())
    return ReqAccountSummary(req_id, group, tags)


def _decode_pnl(r: FieldReader, version: int) -> ReqPnL:
    return ReqPnL(r.read_int("reqId"), r.read_str("account"), r.read_str("modelCode"))


def _decode_pnl_single(r: FieldReader, version: int) -> ReqPnLSingle:
    return ReqPnLSingle(
        r.read_int("reqId"), r.read_str("account"), r.read_str("modelCode"), r.read_int("conId")
    )
