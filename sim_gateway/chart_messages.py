"""TWS API messages of the trader's screen (sans-IO): head time stamps, real-time bars, the live
last bar of a historical request and symbol search.

Registered in ``protocol``'s tables like ``instrument_messages``. Layouts at the negotiated
versions 157..178, checked against ib_async 2.1.0's and ibapi 9.81's clients and decoders:

* reqHeadTimeStamp ``[87, reqId, <12-field contract>, includeExpired, useRTH, whatToShow,
  formatDate]`` → headTimestamp ``[88, reqId, timestamp]``; cancelHeadTimeStamp ``[90, reqId]``;
* reqRealTimeBars ``[50, 3, reqId, <12-field contract>, barSize, whatToShow, useRTH, options]``,
  cancelRealTimeBars ``[51, 1, reqId]`` → realtimeBar ``[50, 3, reqId, time, open, high, low,
  close, volume, wap, count]`` (volume and count integral: ibapi reads ints);
* historicalDataUpdate ``[90, reqId, barCount, date, open, close, high, low, wap, volume]``
  (close before high, as IB sends it; volume integral for ibapi);
* reqMatchingSymbols ``[81, reqId, pattern]`` → symbolSamples ``[79, reqId, n, (conId, symbol,
  secType, primaryExchange, currency, nDerivSecTypes, derivSecType…, [description, issuerId from
  v176])…]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .codec import FieldReader, fmt_price, read_contract
from .tape import Bar
from .types import Contract, ContractQuery

Fields = list[str]

REQ_REAL_TIME_BARS, CANCEL_REAL_TIME_BARS, REQ_MATCHING_SYMBOLS = 50, 51, 81
REQ_HEAD_TIMESTAMP, CANCEL_HEAD_TIMESTAMP = 87, 90
REAL_TIME_BARS, SYMBOL_SAMPLES, HEAD_TIMESTAMP, HISTORICAL_DATA_UPDATE = 50, 79, 88, 90
DESCRIPTION_VERSION = 176


@dataclass(frozen=True)
class ReqHeadTimeStamp:
    req_id: int
    contract: ContractQuery
    use_rth: bool
    what_to_show: str
    format_date: int


@dataclass(frozen=True)
class CancelHeadTimeStamp:
    req_id: int


@dataclass(frozen=True)
class ReqRealTimeBars:
    req_id: int
    contract: ContractQuery
    bar_size: int
    what_to_show: str
    use_rth: bool


@dataclass(frozen=True)
class CancelRealTimeBars:
    req_id: int


@dataclass(frozen=True)
class ReqMatchingSymbols:
    req_id: int
    pattern: str


ChartRequest = (
    ReqHeadTimeStamp
    | CancelHeadTimeStamp
    | ReqRealTimeBars
    | CancelRealTimeBars
    | ReqMatchingSymbols
)


def _decode_head(r: FieldReader, version: int) -> ReqHeadTimeStamp:
    req_id, contract = r.read_int("reqId"), read_contract(r)
    r.skip(1, "includeExpired")
    use_rth, what = r.read_bool("useRTH"), r.read_str("whatToShow")
    return ReqHeadTimeStamp(req_id, contract, use_rth, what, r.read_int("formatDate"))


def _decode_real_time_bars(r: FieldReader, version: int) -> ReqRealTimeBars:
    r.skip(1, "version")
    req_id, contract = r.read_int("reqId"), read_contract(r)
    bar_size, what, use_rth = r.read_int("barSize"), r.read_str("whatToShow"), r.read_bool("useRTH")
    r.skip(1, "realTimeBarsOptions")
    return ReqRealTimeBars(req_id, contract, bar_size, what, use_rth)


def _decode_cancel_real_time_bars(r: FieldReader, version: int) -> CancelRealTimeBars:
    r.skip(1, "version")
    return CancelRealTimeBars(r.read_int("reqId"))


DECODERS: dict[int, Callable[[FieldReader, int], ChartRequest]] = {
    REQ_HEAD_TIMESTAMP: _decode_head,
    CANCEL_HEAD_TIMESTAMP: lambda r, v: CancelHeadTimeStamp(r.read_int("reqId")),
    REQ_REAL_TIME_BARS: _decode_real_time_bars,
    CANCEL_REAL_TIME_BARS: _decode_cancel_real_time_bars,
    REQ_MATCHING_SYMBOLS: lambda r, v: ReqMatchingSymbols(
        r.read_int("reqId"), r.read_str("pattern")
    ),
}


def _contract_fields(c: ContractQuery) -> Fields:
    from .instrument_messages import _contract_fields as fields

    return fields(c)


ENCODERS: dict[type, Callable[[Any, int], Fields]] = {  # client side (tests)
    ReqHeadTimeStamp: lambda q, v: [
        str(REQ_HEAD_TIMESTAMP),
        str(q.req_id),
        *_contract_fields(q.contract),
        "0",
        str(int(q.use_rth)),
        q.what_to_show,
        str(q.format_date),
    ],
    CancelHeadTimeStamp: lambda q, v: [str(CANCEL_HEAD_TIMESTAMP), str(q.req_id)],
    ReqRealTimeBars: lambda q, v: [
        str(REQ_REAL_TIME_BARS),
        "3",
        str(q.req_id),
        *_contract_fields(q.contract),
        str(q.bar_size),
        q.what_to_show,
        str(int(q.use_rth)),
        "",
    ],
    CancelRealTimeBars: lambda q, v: [str(CANCEL_REAL_TIME_BARS), "1", str(q.req_id)],
    ReqMatchingSymbols: lambda q, v: [str(REQ_MATCHING_SYMBOLS), str(q.req_id), q.pattern],
}


# ------------------------------------------------------------------ outgoing
def head_timestamp(req_id: int, stamp: str) -> Fields:
    return [str(HEAD_TIMESTAMP), str(req_id), stamp]


def real_time_bar(req_id: int, bar: Bar) -> Fields:
    return [
        str(REAL_TIME_BARS),
        "3",
        str(req_id),
        str(int(bar.start)),
        fmt_price(bar.open),
        fmt_price(bar.high),
        fmt_price(bar.low),
        fmt_price(bar.close),
        str(int(bar.volume)),
        fmt_price(bar.wap),
        str(bar.count),
    ]


def historical_data_update(req_id: int, bar: Bar, date: str) -> Fields:
    return [
        str(HISTORICAL_DATA_UPDATE),
        str(req_id),
        str(bar.count),
        date,
        fmt_price(bar.open),
        fmt_price(bar.close),
        fmt_price(bar.high),
        fmt_price(bar.low),
        fmt_price(bar.wap),
        str(int(bar.volume)),
    ]


def symbol_samples(req_id: int, contracts: list[Contract], version: int) -> Fields:
    fields = [str(SYMBOL_SAMPLES), str(req_id), str(len(contracts))]
    for c in contracts:
        derivatives = ["OPT", "FUT"] if c.sec_type == "STK" else []
        fields += [
            str(c.con_id),
            c.symbol,
            c.sec_type,
            c.primary_exchange or c.exchange,
            c.currency,
            str(len(derivatives)),
            *derivatives,
        ]
        if version >= DESCRIPTION_VERSION:
            fields += [c.long_name, ""]
    return fields
