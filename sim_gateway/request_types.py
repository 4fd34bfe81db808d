"""The decoded client requests: one frozen dataclass per supported client message, holding
only what the simulator uses, and their union ``Request``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import chart_messages, historical
from . import instrument_messages as im
from .types import (
    ContractQuery,
    ExecutionFilter,
    OrderRequest,
)

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
