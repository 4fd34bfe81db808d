"""TWS API messages (sans-IO): decode client requests, encode server messages.

``decode_request(fields, version)`` turns one frame's fields into a frozen
request dataclass; the ``encode``-style functions below turn the shared value
types of ``types.py`` into the field lists of server messages, gated on the
negotiated ``version`` (157..178, never 158). ``encode_request`` is the client
side, for round-trip tests and raw benchmark clients. Layouts follow
``/work/shared/reference/tws-api-protocol.md`` sections 2 and 3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from . import chart_messages, historical, market_rules
from . import instrument_messages as im
from .codec import (
    UNSET_DOUBLE,
    UNSET_INT_TEXT,
    UNSET_LONG,
    DecodeError,
    FieldReader,
    ProtocolError,
    fmt_bool,
    fmt_price,
    fmt_qty,
    fmt_unset_price,
    parse_int,
    read_contract,
)
from .sessions import ContractHours
from .types import (
    AccountValue,
    CommissionReport,
    Contract,
    ContractQuery,
    Execution,
    ExecutionFilter,
    OrderRequest,
    OrderView,
    PnL,
    PnLSingle,
    PortfolioItem,
    Position,
)

Fields = list[str]


class In(IntEnum):
    """Client → server message ids (ibapi ``OUT`` plus ib_async's newer ones)."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCT_DATA = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    REQ_MKT_DEPTH = 10
    CANCEL_MKT_DEPTH = 11
    REQ_NEWS_BULLETINS = 12
    CANCEL_NEWS_BULLETINS = 13
    SET_SERVER_LOGLEVEL = 14
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_FA = 18
    REPLACE_FA = 19
    REQ_HISTORICAL_DATA = 20
    EXERCISE_OPTIONS = 21
    REQ_SCANNER_SUBSCRIPTION = 22
    CANCEL_SCANNER_SUBSCRIPTION = 23
    REQ_SCANNER_PARAMETERS = 24
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_REAL_TIME_BARS = 50
    CANCEL_REAL_TIME_BARS = 51
    REQ_FUNDAMENTAL_DATA = 52
    CANCEL_FUNDAMENTAL_DATA = 53
    REQ_CALC_IMPLIED_VOLAT = 54
    REQ_CALC_OPTION_PRICE = 55
    CANCEL_CALC_IMPLIED_VOLAT = 56
    CANCEL_CALC_OPTION_PRICE = 57
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    VERIFY_REQUEST = 65
    VERIFY_MESSAGE = 66
    QUERY_DISPLAY_GROUPS = 67
    SUBSCRIBE_TO_GROUP_EVENTS = 68
    UPDATE_DISPLAY_GROUP = 69
    UNSUBSCRIBE_FROM_GROUP_EVENTS = 70
    START_API = 71
    VERIFY_AND_AUTH_REQUEST = 72
    VERIFY_AND_AUTH_MESSAGE = 73
    REQ_POSITIONS_MULTI = 74
    CANCEL_POSITIONS_MULTI = 75
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_SEC_DEF_OPT_PARAMS = 78
    REQ_SOFT_DOLLAR_TIERS = 79
    REQ_FAMILY_CODES = 80
    REQ_MATCHING_SYMBOLS = 81
    REQ_MKT_DEPTH_EXCHANGES = 82
    REQ_SMART_COMPONENTS = 83
    REQ_NEWS_ARTICLE = 84
    REQ_NEWS_PROVIDERS = 85
    REQ_HISTORICAL_NEWS = 86
    REQ_HEAD_TIMESTAMP = 87
    REQ_HISTOGRAM_DATA = 88
    CANCEL_HISTOGRAM_DATA = 89
    CANCEL_HEAD_TIMESTAMP = 90
    REQ_MARKET_RULE = 91
    REQ_PNL = 92
    CANCEL_PNL = 93
    REQ_PNL_SINGLE = 94
    CANCEL_PNL_SINGLE = 95
    REQ_HISTORICAL_TICKS = 96
    REQ_TICK_BY_TICK_DATA = 97
    CANCEL_TICK_BY_TICK_DATA = 98
    REQ_COMPLETED_ORDERS = 99
    REQ_WSH_META_DATA = 100
    CANCEL_WSH_META_DATA = 101
    REQ_WSH_EVENT_DATA = 102
    CANCEL_WSH_EVENT_DATA = 103
    REQ_USER_INFO = 104


class Out(IntEnum):
    """Server → client message ids (ibapi ``IN``)."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MARKET_DEPTH = 12
    MARKET_DEPTH_L2 = 13
    NEWS_BULLETINS = 14
    MANAGED_ACCTS = 15
    RECEIVE_FA = 16
    HISTORICAL_DATA = 17
    BOND_CONTRACT_DATA = 18
    SCANNER_PARAMETERS = 19
    SCANNER_DATA = 20
    TICK_OPTION_COMPUTATION = 21
    TICK_GENERIC = 45
    TICK_STRING = 46
    TICK_EFP = 47
    CURRENT_TIME = 49
    REAL_TIME_BARS = 50
    FUNDAMENTAL_DATA = 51
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    DELTA_NEUTRAL_VALIDATION = 56
    TICK_SNAPSHOT_END = 57
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    VERIFY_MESSAGE_API = 65
    VERIFY_COMPLETED = 66
    DISPLAY_GROUP_LIST = 67
    DISPLAY_GROUP_UPDATED = 68
    VERIFY_AND_AUTH_MESSAGE_API = 69
    VERIFY_AND_AUTH_COMPLETED = 70
    POSITION_MULTI = 71
    POSITION_MULTI_END = 72
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    SECURITY_DEFINITION_OPTION_PARAMETER = 75
    SECURITY_DEFINITION_OPTION_PARAMETER_END = 76
    SOFT_DOLLAR_TIERS = 77
    FAMILY_CODES = 78
    SYMBOL_SAMPLES = 79
    MKT_DEPTH_EXCHANGES = 80
    TICK_REQ_PARAMS = 81
    SMART_COMPONENTS = 82
    NEWS_ARTICLE = 83
    TICK_NEWS = 84
    NEWS_PROVIDERS = 85
    HISTORICAL_NEWS = 86
    HISTORICAL_NEWS_END = 87
    HEAD_TIMESTAMP = 88
    HISTOGRAM_DATA = 89
    HISTORICAL_DATA_UPDATE = 90
    REROUTE_MKT_DATA_REQ = 91
    REROUTE_MKT_DEPTH_REQ = 92
    MARKET_RULE = 93
    PNL = 94
    PNL_SINGLE = 95
    HISTORICAL_TICKS = 96
    HISTORICAL_TICKS_BID_ASK = 97
    HISTORICAL_TICKS_LAST = 98
    TICK_BY_TICK = 99
    ORDER_BOUND = 100
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102
    REPLACE_FA_END = 103


# ======================================================================= requests
# One frozen dataclass per supported client message, holding only what the simulator uses.


@dataclass(frozen=True)
class StartApi:
    client_id: int
    optional_capabilities: str = ""


@dataclass(frozen=True)
class ReqIds:
    num_ids: int = 1  # ignored by TWS; ib_async sends -1


@dataclass(frozen=True)
class ReqCurrentTime:
    pass


@dataclass(frozen=True)
class ReqManagedAccts:
    pass


@dataclass(frozen=True)
class ReqContractDetails:
    req_id: int
    contract: ContractQuery


@dataclass(frozen=True)
class ReqMktData:
    req_id: int
    contract: ContractQuery
    generic_ticks: str = ""
    snapshot: bool = False
    regulatory_snapshot: bool = False


@dataclass(frozen=True)
class CancelMktData:
    req_id: int


@dataclass(frozen=True)
class ReqMarketDataType:
    market_data_type: int


@dataclass(frozen=True)
class PlaceOrder:
    order: OrderRequest


@dataclass(frozen=True)
class CancelOrder:
    order_id: int


@dataclass(frozen=True)
class ReqOpenOrders:
    pass


@dataclass(frozen=True)
class ReqAllOpenOrders:
    pass


@dataclass(frozen=True)
class ReqAutoOpenOrders:
    auto_bind: bool


@dataclass(frozen=True)
class ReqCompletedOrders:
    api_only: bool


@dataclass(frozen=True)
class ReqExecutions:
    req_id: int
    filter: ExecutionFilter


@dataclass(frozen=True)
class ReqPositions:
    pass


@dataclass(frozen=True)
class CancelPositions:
    pass


@dataclass(frozen=True)
class ReqAccountUpdates:
    subscribe: bool
    account: str


@dataclass(frozen=True)
class ReqAccountUpdatesMulti:
    req_id: int
    account: str
    model_code: str = ""
    ledger_and_nlv: bool = False


@dataclass(frozen=True)
class CancelAccountUpdatesMulti:
    req_id: int


@dataclass(frozen=True)
class ReqAccountSummary:
    req_id: int
    group: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class CancelAccountSummary:
    req_id: int


@dataclass(frozen=True)
class ReqPnL:
    req_id: int
    account: str
    model_code: str = ""


@dataclass(frozen=True)
class CancelPnL:
    req_id: int


@dataclass(frozen=True)
class ReqPnLSingle:
    req_id: int
    account: str
    model_code: str
    con_id: int


@dataclass(frozen=True)
class CancelPnLSingle:
    req_id: int


@dataclass(frozen=True)
class ReqGlobalCancel:
    pass


@dataclass(frozen=True)
class Unsupported:
    """A known-but-unsupported or unknown message; req_id -1 when it has none."""

    msg_id: int
    name: str
    req_id: int = -1


Request = (
    StartApi | ReqIds | ReqCurrentTime | ReqManagedAccts | ReqContractDetails | ReqMktData
    | CancelMktData | ReqMarketDataType | PlaceOrder | CancelOrder | ReqOpenOrders
    | ReqAllOpenOrders | ReqAutoOpenOrders | ReqCompletedOrders | ReqExecutions | ReqPositions
    | CancelPositions | ReqAccountUpdates | ReqAccountUpdatesMulti | CancelAccountUpdatesMulti
    | ReqAccountSummary | CancelAccountSummary | ReqPnL | CancelPnL | ReqPnLSingle
    | CancelPnLSingle | ReqGlobalCancel | Unsupported
    | im.InstrumentRequest  # option chains, market depth, market rules
    | historical.HistoricalRequest  # historical bars
    | chart_messages.ChartRequest  # head time stamps, real-time bars, symbol search
)  # fmt: skip

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
        r.read_int("reqId"), r.read_str("account"), r.read_str("modelCode"), r.read_bool("ledgerAndNLV")
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


# ---------------------------------------------------------------- placeOrder (§3.1)

_CONDITION_WIDTH = {1: 6, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5}  # fields after condType
_PEG_BENCH = {"PEG BENCH", "PEGBENCH"}
_PEG_BEST = {"PEG BEST", "PEGBEST"}
_PEG_MID = {"PEG MID", "PEGMID"}


def _read_order_main(r: FieldReader) -> dict[str, Any]:
    """action … hidden."""
    main = {
        "action": r.read_str("action"),
        "total_quantity": r.read_float("totalQuantity"),
        "order_type": r.read_str("orderType"),
        "lmt_price": r.read_opt_float("lmtPrice"),
        "aux_price": r.read_opt_float("auxPrice"),
        "tif": r.read_str("tif"),
        "oca_group": r.read_str("ocaGroup"),
        "account": r.read_str("account"),
    }
    r.skip(2, "openClose..origin")
    main["order_ref"] = r.read_str("orderRef")
    main["transmit"] = r.read_bool("transmit", default=True)
    main["parent_id"] = r.read_int("parentId")
    r.skip(4, "blockOrder..triggerMethod")
    main["outside_rth"] = r.read_bool("outsideRth")
    r.skip(1, "hidden")
    return main


def _skip_bag_legs(r: FieldReader, sec_type: str) -> None:
    """Combo legs, order combo legs and smart routing params (BAG only)."""
    if sec_type == "BAG":
        _skip_groups(r, "comboLegsCount", 8)
        _skip_groups(r, "orderComboLegsCount", 1)
        _skip_groups(r, "smartComboRoutingParamsCount", 2)


def _read_order_extended(r: FieldReader, version: int) -> dict[str, Any]:
    """sharesAllocation … delta-neutral block."""
    r.skip(7 + int(version < 177), "sharesAllocation..faProfile")
    r.skip(4, "modelCode..exemptCode")
    oca_type = r.read_int("ocaType")
    r.skip(5, "rule80A..percentOffset")
    extended = {
        "oca_type": oca_type,
        "e_trade_only": r.read_bool("eTradeOnly"),
        "firm_quote_only": r.read_bool("firmQuoteOnly"),
    }
    r.skip(10, "nbboPriceCap..volatilityType")
    delta_neutral_type = r.read_str("deltaNeutralOrderType")
    r.skip(1, "deltaNeutralAuxPrice")
    if delta_neutral_type:
        r.skip(8, "deltaNeutralConId..deltaNeutralDesignatedLocation")
    return extended


def _read_order_trail_scale(r: FieldReader) -> dict[str, Any]:
    """continuousUpdate … hedge params."""
    r.skip(2, "continuousUpdate..referencePriceType")
    trail = {
        "trail_stop_price": r.read_opt_float("trailStopPrice"),
        "trailing_percent": r.read_opt_float("trailingPercent"),
    }
    r.skip(2, "scaleInitLevelSize..scaleSubsLevelSize")
    increment = r.read_opt_float("scalePriceIncrement")
    if increment is not None and 0 < increment < UNSET_DOUBLE:
        r.skip(7, "scalePriceAdjustValue..scaleRandomPercent")
    r.skip(3, "scaleTable..activeStopTime")
    if r.read_str("hedgeType"):
        r.skip(1, "hedgeParam")
    return trail


def _skip_order_routing(r: FieldReader) -> None:
    """optOutSmartRouting … algo params."""
    r.skip(4, "optOutSmartRouting..notHeld")
    if r.read_bool("deltaNeutralContractPresent"):
        r.skip(3, "deltaNeutralContract")
    if r.read_str("algoStrategy"):
        _skip_groups(r, "algoParamsCount", 2)


def _read_order_flags(r: FieldReader, order_type: str) -> dict[str, Any]:
    """algoId … conditions."""
    r.skip(1, "algoId")
    flags = {"what_if": r.read_bool("whatIf")}
    r.skip(4, "orderMiscOptions..randomizePrice")
    if order_type in _PEG_BENCH:
        r.skip(5, "referenceContractId..referenceExchangeId")
    count = r.read_count("conditionsCount", 2)
    for _ in range(count):
        cond_type = r.read_int("condType")
        if cond_type not in _CONDITION_WIDTH:
            raise DecodeError(f"{r.message}.condType: unknown condition type {cond_type}")
        r.skip(_CONDITION_WIDTH[cond_type], "condition")
    if count:
        r.skip(2, "conditionsIgnoreRth..conditionsCancelOrder")
    return flags


def _skip_order_tail(r: FieldReader, version: int, exchange: str, order_type: str) -> None:
    """adjustedOrderType … usePriceMgmtAlgo, then the version-gated fields."""
    r.skip(19, "adjustedOrderType..usePriceMgmtAlgo")
    r.skip(sum(version >= gate for gate in (158, 160, 162, 166, 169)), "duration..manualOrderTime")
    if version < 170:
        return
    if exchange == "IBKRATS":
        r.skip(1, "minTradeQty")
    if order_type in _PEG_BEST:
        r.skip(1, "minCompeteSize")
        if r.read_opt_float("competeAgainstBestOffset") == float("inf"):
            r.skip(2, "midOffsetAtWhole..midOffsetAtHalf")
    elif order_type in _PEG_MID:
        r.skip(2, "midOffsetAtWhole..midOffsetAtHalf")


def _decode_place_order(r: FieldReader, version: int) -> PlaceOrder:
    order_id, contract = r.read_int("orderId"), read_contract(r)
    r.skip(2, "secIdType..secId")
    main = _read_order_main(r)
    _skip_bag_legs(r, contract.sec_type)
    extended = _read_order_extended(r, version)
    trail = _read_order_trail_scale(r)
    _skip_order_routing(r)
    flags = _read_order_flags(r, main["order_type"])
    _skip_order_tail(r, version, contract.exchange, main["order_type"])
    return PlaceOrder(OrderRequest(order_id=order_id, contract=contract, **main, **extended, **trail, **flags))


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
    **dict.fromkeys((10, 11, 21, 23, 25, 50, 51, 52, 53, 54, 55, 56, 57, 67, 68, 69, 70, 74, 75), 2),
    **dict.fromkeys((20, 22, 78, 79, 81, 83, 84, 86, 87, 88, 89, 90, 96, 97, 98, 100, 101, 102, 103, 104), 1),
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
    return ["7", "3", str(req.req_id), str(f.client_id), f.account, f.time, f.symbol, f.sec_type, f.exchange, f.side]


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
        "76", "1", str(q.req_id), q.account, q.model_code, fmt_bool(q.ledger_and_nlv)
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


# ================================================================ server messages


def next_valid_id(order_id: int) -> Fields:
    return ["9", "1", str(order_id)]


def managed_accounts(accounts: list[str] | tuple[str, ...]) -> Fields:
    return ["15", "1", ",".join(accounts)]


def error(req_id: int, code: int, text: str, version: int) -> Fields:
    """errorMsg; advancedOrderRejectJson only at v>=166 (ibapi 9.81 wants 5 fields)."""
    return ["4", "2", str(req_id), str(code), text] + ([""] if version >= 166 else [])


def current_time(unix_seconds: int) -> Fields:
    return ["49", "1", str(unix_seconds)]


# ---------------------------------------------------------------- contract details


def _wire(contract: Contract) -> Contract:
    """CASH contracts go out as IB shows them: IDEALPRO, no primary exchange, ``EUR.USD``."""
    if contract.sec_type != "CASH":
        return contract
    pair = f"{contract.symbol}.{contract.currency}"
    return replace(
        contract,
        exchange="IDEALPRO" if contract.exchange in ("", "SMART") else contract.exchange,
        primary_exchange="",
        local_symbol=contract.local_symbol or pair,
        trading_class=contract.trading_class or pair,
    )



_ORDER_TYPES = {
    "STK": "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AON,AVGCOST,COND,CONDORDER,DAY,GAT,GTC,GTD,HID,IOC,"
    "LIT,LMT,MIT,MKT,MOC,MOO,MTL,OCA,REL,SCALE,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF",
    "CASH": "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,COND,CONDORDER,DAY,GAT,GTC,GTD,IOC,LIT,LMT,"
    "MIT,MKT,OCA,REL,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF",
    "OPT": "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,COND,CONDORDER,DAY,GAT,GTC,GTD,IOC,LIT,LMT,MIT,MKT,"
    "MTL,OCA,REL,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,VOLAT,WHATIF",
    "FUT": "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,COND,CONDORDER,DAY,GAT,GTC,GTD,IOC,LIT,LMT,MIT,MKT,"
    "MTL,OCA,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF",
    "IND": "",
}


def _size_rules(contract: Contract) -> tuple[str, str, str]:
    """minSize, sizeIncrement, suggestedSizeIncrement."""
    return ("1", "1", "100") if contract.sec_type == "STK" else ("1", "1", "1")


def _valid_exchanges(contract: Contract) -> str:
    extra = contract.primary_exchange
    return f"{contract.exchange},{extra}" if extra and extra != contract.exchange else contract.exchange


def contract_data(req_id: int, contract: Contract, version: int, hours: ContractHours | None = None) -> Fields:
    """contractDetails (§2.18): v>=164 unversioned + size rules; v<164 version 8 + mdSizeMultiplier.

    ``hours``: timeZoneId, tradingHours and liquidHours (``sessions.contract_hours``); None leaves
    the hours empty and the zone the contract's."""
    c = _wire(contract)
    under, expires = str(c.under_con_id), c.last_trade_date if c.sec_type in ("OPT", "FUT", "CONTFUT") else ""
    zone, trading, liquid = (c.time_zone_id, "", "") if hours is None else (
        hours.time_zone_id, hours.trading_hours, hours.liquid_hours)
    head = ["10"] + (["8"] if version < 164 else []) + [str(req_id)]
    body = [
        c.symbol, c.sec_type, c.last_trade_date, fmt_price(c.strike, "0.0"), c.right, c.exchange,
        c.currency, c.local_symbol, c.trading_class, c.trading_class, str(c.con_id), fmt_price(c.min_tick, "0.0"),
        *(["1"] if version < 164 else []),
        c.multiplier, _ORDER_TYPES.get(c.sec_type, "LMT,MKT"), _valid_exchanges(c), "1", under, c.long_name,
        c.primary_exchange, c.contract_month, c.industry, c.category, c.subcategory, zone, trading, liquid,
        "", "", "0", "1", c.under_symbol, c.under_sec_type, market_rules.rule_ids(c, _valid_exchanges(c)),
        expires, c.stock_type if c.sec_type == "STK" else "",
    ]  # fmt: skip
    rules = _size_rules(c)
    tail = list(rules) if version >= 164 else [rules[1]] if version == 163 else []
    return head + body + tail


def contract_data_end(req_id: int) -> Fields:
    return ["52", "1", str(req_id)]


# ---------------------------------------------------------------- market data


def tick_req_params(req_id: int, min_tick: float, bbo_exchange: str, snapshot_permissions: int) -> Fields:
    return ["81", str(req_id), fmt_price(min_tick, "0.0"), bbo_exchange, str(snapshot_permissions)]


def market_data_type(req_id: int, market_data_type: int) -> Fields:
    return ["58", "1", str(req_id), str(market_data_type)]


def tick_price(req_id: int, tick_type: int, price: float, size: float, attr_mask: int = 0) -> Fields:
    """Exactly 7 fields; the size must be integral for ibapi 9.81."""
    return ["1", "6", str(req_id), str(tick_type), fmt_price(price, "0.0"), fmt_qty(size), str(attr_mask)]


def tick_size(req_id: int, tick_type: int, size: float) -> Fields:
    return ["2", "6", str(req_id), str(tick_type), fmt_qty(size)]


def tick_string(req_id: int, tick_type: int, value: str) -> Fields:
    return ["46", "6", str(req_id), str(tick_type), value]


def tick_generic(req_id: int, tick_type: int, value: float) -> Fields:
    return ["45", "6", str(req_id), str(tick_type), fmt_price(value, "0.0")]


def tick_snapshot_end(req_id: int) -> Fields:
    return ["57", "1", str(req_id)]


# ---------------------------------------------------------------- orders


def _order_contract(contract: Contract) -> Fields:
    """Contract block of openOrder/completedOrder (stocks carry right "?")."""
    c = _wire(contract)
    return [
        str(c.con_id), c.symbol, c.sec_type, c.last_trade_date, fmt_price(c.strike, "0.0"), c.right or "?",
        c.multiplier, c.exchange, c.currency, c.local_symbol, c.trading_class,
    ]  # fmt: skip


def _order_head(o: OrderView) -> Fields:
    """action … account (shared by openOrder and completedOrder)."""
    return [
        o.action, fmt_qty(o.total_quantity), o.order_type, fmt_price(o.lmt_price, "0.0"),
        fmt_price(o.aux_price, "0.0"), o.tif, o.oca_group, o.account,
    ]  # fmt: skip


def _oca_type(o: OrderView) -> str:
    return str(o.oca_type or 3)


def _margins(o: OrderView) -> Fields:
    """The nine orderState margin figures, UNSET unless known (whatIf)."""
    values = (
        o.init_margin_before, o.maint_margin_before, o.equity_with_loan_before,
        o.init_margin_change, o.maint_margin_change, o.equity_with_loan_change,
        o.init_margin_after, o.maint_margin_after, o.equity_with_loan_after,
    )  # fmt: skip
    return [fmt_unset_price(value) for value in values]


def _v170_tail(version: int) -> Fields:
    """minTradeQty, minCompeteSize, competeAgainstBestOffset, midOffsetAtWhole/Half."""
    return [""] * 5 if version >= 170 else []


def open_order(o: OrderView, version: int) -> Fields:
    """openOrder (§2.12), 128 fields at v157 and 135 at v178 for a plain order."""
    return [
        "5", str(o.order_id), *_order_contract(o.contract), *_order_head(o),
        "", "0", o.order_ref, str(o.client_id), str(o.perm_id), fmt_bool(o.outside_rth), "0", "0", "",
        f"{o.perm_id}.0/{o.account}/{fmt_qty(o.total_quantity)}", "", "", "", *([""] if version < 177 else []),
        "", "", "", "", "", "0", "", "-1", "0", "", "", "", "", "",
        UNSET_INT_TEXT, "0", "0", "0", "", _oca_type(o), "0", "0", "", str(o.parent_id), "0", "", "0",
        "None", "", "0", "", "", "", "?", "0", "0", "",
        "0", "0", fmt_price(o.trail_stop_price), fmt_price(o.trailing_percent), "", "", "", "0", "0", "0",
        UNSET_INT_TEXT, UNSET_INT_TEXT, "", "", "0", "", "IB", "0", "0", "", "0",
        fmt_bool(o.what_if), o.status, *_margins(o),
        fmt_price(o.commission), fmt_price(o.min_commission), fmt_price(o.max_commission),
        o.commission_currency, o.warning_text, "0", "0", "0",
        "None", fmt_unset_price(None), fmt_unset_price(o.trail_stop_price),
        *[fmt_unset_price(None)] * 4, "0", "", "", "", "0", "1", "0", "0", "0",
        *[value for gate, value in ((158, ""), (160, ""), (162, "0")) if version >= gate], *_v170_tail(version),
    ]  # fmt: skip


def open_order_end() -> Fields:
    return ["53", "1"]


def order_status(o: OrderView) -> Fields:
    """orderStatus (§2.14): no version field."""
    return [
        "3", str(o.order_id), o.status, fmt_qty(o.filled), fmt_qty(o.remaining),
        fmt_price(o.avg_fill_price, "0.0"), str(o.perm_id), str(o.parent_id),
        fmt_price(o.last_fill_price, "0.0"), str(o.client_id), "", "0",
    ]  # fmt: skip


def completed_order(o: OrderView, version: int) -> Fields:
    """completedOrder (§2.17), 96 fields at v157 and 100 at v178 for a plain order."""
    return [
        "101", *_order_contract(o.contract), *_order_head(o),
        "", "0", o.order_ref, str(o.perm_id), fmt_bool(o.outside_rth), "0", "0", "",
        "", "", "", *([""] if version < 177 else []),
        "", "", "", "", "", "0", "", "-1", "", "", "", "", "",
        UNSET_INT_TEXT, "0", "0", "", _oca_type(o), "0", "", "0",
        "None", "", "0", "0", "0", "",
        "0", "0", fmt_price(o.trail_stop_price), fmt_price(o.trailing_percent), "", "0", "0", "0",
        UNSET_INT_TEXT, UNSET_INT_TEXT, "", "", "", "IB", "0", "0", "", "0",
        o.status, "0", "0", "0",
        fmt_unset_price(o.trail_stop_price), fmt_unset_price(None), "0", "1", "0", "",
        fmt_qty(o.filled), UNSET_INT_TEXT, "0", "Not an insider or substantial shareholder", "0", "0",
        str(o.parent_perm_id or UNSET_LONG), o.completed_time, o.completed_status, *_v170_tail(version),
    ]  # fmt: skip


def completed_orders_end() -> Fields:
    return ["102"]


# ---------------------------------------------------------------- executions


def exec_details(req_id: int, e: Execution, version: int) -> Fields:
    """execDetails (§2.15): the contract's exchange is the execution venue."""
    c = _wire(e.contract)
    return [
        "11", str(req_id), str(e.order_id), str(c.con_id), c.symbol, c.sec_type, c.last_trade_date,
        fmt_price(c.strike, "0.0"), c.right, c.multiplier, e.exchange, c.currency, c.local_symbol,
        c.trading_class, e.exec_id, e.time, e.account, e.exchange, e.side, fmt_qty(e.shares),
        fmt_price(e.price, "0.0"), str(e.perm_id), str(e.client_id), "0", fmt_qty(e.cum_qty),
        fmt_price(e.avg_price, "0.0"), e.order_ref, "", "", "", str(e.last_liquidity),
        *(["0"] if version >= 178 else []),
    ]  # fmt: skip


def exec_details_end(req_id: int) -> Fields:
    return ["55", "1", str(req_id)]


def commission_report(report: CommissionReport) -> Fields:
    """Exactly 8 fields; realizedPNL and yield UNSET when unknown."""
    return [
        "59", "1", report.exec_id, fmt_price(report.commission, "0.0"), report.currency,
        fmt_unset_price(report.realized_pnl), fmt_unset_price(None), "",
    ]  # fmt: skip


# ---------------------------------------------------------------- portfolio and account


def position(p: Position) -> Fields:
    """Exactly 16 fields; exchange is the primary listing (empty for CASH)."""
    c = _wire(p.contract)
    return [
        "61", "3", p.account, str(c.con_id), c.symbol, c.sec_type, c.last_trade_date,
        fmt_price(c.strike, "0.0"), c.right, c.multiplier, c.primary_exchange, c.currency,
        c.local_symbol, c.trading_class, fmt_qty(p.position), fmt_price(p.avg_cost, "0.0"),
    ]  # fmt: skip


def position_end() -> Fields:
    return ["62", "1"]


def account_value(v: AccountValue) -> Fields:
    return ["6", "2", v.key, v.value, v.currency, v.account]


def portfolio_value(item: PortfolioItem) -> Fields:
    """Exactly 20 fields; primaryExchange, not exchange."""
    c = _wire(item.contract)
    return [
        "7", "8", str(c.con_id), c.symbol, c.sec_type, c.last_trade_date, fmt_price(c.strike, "0.0"),
        c.right, c.multiplier, c.primary_exchange, c.currency, c.local_symbol, c.trading_class,
        fmt_qty(item.position), fmt_price(item.market_price, "0.0"), fmt_price(item.market_value, "0.0"),
        fmt_price(item.avg_cost, "0.0"), fmt_price(item.unrealized_pnl, "0.0"),
        fmt_price(item.realized_pnl, "0.0"), item.account,
    ]  # fmt: skip


def account_update_time(hhmm: str) -> Fields:
    return ["8", "1", hhmm]


def account_download_end(account: str) -> Fields:
    return ["54", "1", account]


def account_summary(req_id: int, v: AccountValue) -> Fields:
    return ["63", "1", str(req_id), v.account, v.key, v.value, v.currency]


def account_summary_end(req_id: int) -> Fields:
    return ["64", "1", str(req_id)]


def account_update_multi(req_id: int, v: AccountValue, model_code: str = "") -> Fields:
    return ["73", "1", str(req_id), v.account, model_code, v.key, v.value, v.currency]


def account_update_multi_end(req_id: int) -> Fields:
    return ["74", "1", str(req_id)]


def pnl(req_id: int, p: PnL) -> Fields:
    return [
        "94", str(req_id), fmt_price(p.daily_pnl, "0.0"), fmt_price(p.unrealized_pnl, "0.0"),
        fmt_price(p.realized_pnl, "0.0"),
    ]  # fmt: skip


def pnl_single(req_id: int, p: PnLSingle) -> Fields:
    """The position must be integral for ibapi 9.81 (decoded as int)."""
    return [
        "95", str(req_id), fmt_qty(p.position), fmt_price(p.daily_pnl, "0.0"),
        fmt_price(p.unrealized_pnl, "0.0"), fmt_price(p.realized_pnl, "0.0"), fmt_price(p.value, "0.0"),
    ]  # fmt: skip

