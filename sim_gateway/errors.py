"""IB's error and message codes the simulated gateway sends: ONE table, with sources.

Sources (``source`` of each row):

* ``table``: IB's TWS API message-code table, interactivebrokers.github.io/tws-api/message_codes.html
  (also ibkrcampus.com "TWS API error codes"); the text is IB's;
* ``wire``: the exact text real gateways put on the wire, as users recorded it (issue threads and
  recorded sessions; where it differs from the table's wording, the wire wins);
* ``sim``: the simulator's own wording for a reason IB words differently per case (marked so).

Texts with ``{name}`` placeholders are filled by ``Msg.format``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Msg:
    code: int
    text: str
    source: str
    note: str = ""

    def format(self, **values: object) -> str:
        return self.text.format(**values)


_ROWS = (
    Msg(
        100,
        "Max rate of messages per second has been exceeded:max={max} rec={rec} ({count})",
        "wire",
        "table: 'Max rate of messages per second has been exceeded.' - 'The TWS will likely disconnect "
        "the client application after this message'; wire form as logged by users "
        "('max=50 rec=138 (1)'); ib_insync PR #35: several 100s, then the connection drops",
    ),
    Msg(
        101,
        "Max number of tickers has been reached",
        "table",
        "reqMktData beyond the account's market data lines (100 by default); no ticks follow",
    ),
    Msg(103, "Duplicate order id", "wire", "table: 'Duplicate order ID.'"),
    Msg(104, "Can't modify a filled order", "wire", "table: 'Can't modify a filled order.'"),
    Msg(
        110,
        "The price does not conform to the minimum price variation for this contract.",
        "table",
        "ib_async treats 110 as a warning: the order is not placed",
    ),
    Msg(
        135,
        "Can't find order with id = {order_id}",
        "wire",
        "table: 'Can't find order with ID ='; sent for a modify naming a parent that no longer "
        "works (ib_insync #647: 'Error 135, reqId 22: Can't find order with id = 20', the id of "
        "the filled entry of the bracket whose stop was moved); a cancel of an unknown id "
        "answers 10147, as current TWS builds do",
    ),
    Msg(
        161,
        "Cancel attempted when order is not in a cancellable state.  Order permId ={perm_id}",
        "table",
        "not sent: a cancel of a done order answers 10148",
    ),
    Msg(200, "No security definition has been found for the request", "wire", ""),
    Msg(
        201,
        "Order rejected - reason:{reason}",
        "wire",
        "ib_insync #554: 'Order rejected - reason:YOUR ORDER IS NOT ACCEPTED...', between the "
        "order's Inactive status and a second Inactive",
    ),
    Msg(202, "Order Canceled - reason:{reason}", "wire", "sent after orderStatus Cancelled"),
    Msg(320, "Error reading request. {detail}", "table", "'Error reading request:' + detail"),
    Msg(321, "Error validating request.-'bN' : cause - {detail}", "wire", ""),
    Msg(
        322,
        "Error processing request.-'sim' : cause - {detail}",
        "sim",
        "table: 'Error processing request'",
    ),
    Msg(
        326,
        "Unable to connect as the client id is already in use. Retry with a unique client id.",
        "wire",
        "",
    ),
    Msg(
        399,
        "Order Message:\n{action} {quantity} {symbol} {listing}\nWarning: Your order will not be "
        "placed at the exchange until {until}",
        "wire",
        "users' logs: 'Order Message: BUY 1 CYCU NASDAQ.NMS Warning: Your order will not be placed at "
        "the exchange until 2026-07-31 09:30:00 US/Eastern.'; a warning: the order lives",
    ),
    Msg(
        404,
        "Order held while securities are located.",
        "wire",
        "ib_insync #328's log ('Error 404, reqId 41686: Order held while securities are "
        "located.'); table: 'Shares for this order are not immediately available for short sale. "
        "The order will be held while we attempt to locate the shares.'; with orderStatus "
        "Inactive whyHeld 'locate' (nautilus_trader #3723): the order lives and may fill",
    ),
    Msg(
        502,
        "Maximum number of API connections ({max}) reached.",
        "sim",
        "table 502 is 'Couldn't connect to TWS'; a full gateway refuses with this",
    ),
    Msg(
        162,
        "Historical Market Data Service error message:{detail}",
        "wire",
        "table: 'Historical market data Service error message.'; pacing wire text as users logged "
        "it: 'Historical Market Data Service error message:Historical data request pacing "
        "violation'",
    ),
    Msg(
        354,
        "Requested market data is not subscribed.{detail}",
        "wire",
        "users' logs: 'Requested market data is not subscribed.Delayed market data is available."
        "AAPL NASDAQ.NMS/TOP/ALL'; no ticks follow",
    ),
    Msg(
        420,
        "Invalid Real-time Query:{detail}",
        "table",
        "table: 'Invalid real-time query.' (e.g. no market data permissions for real-time bars)",
    ),
    Msg(1100, "Connectivity between IB and Trader Workstation has been lost.", "table", ""),
    Msg(
        1101,
        "Connectivity between IB and TWS has been restored- data lost.*",
        "wire",
        "table: '...restored - data lost.' (market data requests must be resubmitted)",
    ),
    Msg(1102, "Connectivity between IB and TWS has been restored- data maintained.", "wire", ""),
    Msg(2103, "Market data farm connection is broken:{farm}", "table", ""),
    Msg(2104, "Market data farm connection is OK:{farm}", "table", ""),
    Msg(2105, "HMDS data farm connection is broken:{farm}", "table", ""),
    Msg(2106, "HMDS data farm connection is OK:{farm}", "table", ""),
    Msg(2157, "Sec-def data farm connection is broken:{farm}", "table", ""),
    Msg(2158, "Sec-def data farm connection is OK:{farm}", "table", ""),
    Msg(
        2109,
        "Order Event Warning:Attribute 'Outside Regular Trading Hours' is ignored based on the "
        "order type and destination. PlaceOrder is now being processed.",
        "wire",
        "table: '...PlaceOrder is now processed'; wire form from a live LEAN log ('Brokerage "
        "Warning: Order Event Warning:Attribute ...'); a stock MKT order with outsideRth: the "
        "flag is cleared (ib_insync #141) and the order waits for regular hours",
    ),
    Msg(
        10089,
        "Requested market data requires additional subscription for API. See link in 'Market "
        "Data Connections' dialog for more details.Delayed market data is available.{listing}",
        "wire",
        "IB4m #158 ('...Delayed market data is available.SPY ARCA/TOP/ALL', a paper account); "
        "for a delayed request an advisory: the delayed ticks follow (rust-ibapi #677)",
    ),
    Msg(10147, "OrderId {order_id} that needs to be cancelled is not found.", "table", ""),
    Msg(
        10148,
        "OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {state}.",
        "table",
        "",
    ),
    Msg(
        10167,
        "Requested market data is not subscribed. Displaying delayed market data.",
        "wire",
        "a warning: delayed ticks (66..76) follow",
    ),
    Msg(
        10168,
        "Requested market data is not subscribed. Delayed market data is not enabled.",
        "wire",
        "deephaven-ib #45; no ticks follow",
    ),
    Msg(
        10197,
        "No market data during competing live session",
        "wire",
        "LEAN IB brokerage #140: the same user logged in elsewhere (e.g. the phone app)",
    ),
    Msg(10268, "The 'EtradeOnly' order attribute is not supported.", "table", ""),
    Msg(10269, "The 'firmQuoteOnly' order attribute is not supported.", "table", ""),
    Msg(
        10326,
        "OCA group revision is not allowed",
        "wire",
        "table: 'OCA group revision is not allowed'; answered to a modify of a bracket leg that "
        "names the OCA group it was placed with: IB renames a bracket child's group to its "
        "parent's permId (read back so by users; nautilus_trader #2978), and the leg keeps its "
        "price",
    ),
    Msg(
        10327,
        "OCA group type revision is not allowed",
        "wire",
        "table: 'OCA group type revision is not allowed'; answered to a bracket leg's modify "
        "that names its parent but not its OCA group (a user's paper session: the leg re-sent "
        "with no OCA fields), the leg unchanged",
    ),
    Msg(
        10349,
        "Order TIF was set to DAY based on order preset.",
        "wire",
        "sent for a blank TIF by an account with the default order preset; ib_async 2.1.0 marks "
        "the live trade Cancelled (ib_async #191/#217)",
    ),
)
TABLE: dict[int, Msg] = {row.code: row for row in _ROWS}

# 201's reasons: IB words them per case. The simulator's own (missing prices, bad quantity,
# unsupported type or TIF, foreign account, inactive parent) are ``sim``; the margin text is the
# wire's (broker_state._margin_text); an off-tick price is 110, not 201 (table).


def text(code: int, **values: object) -> str:
    """The text of ``code`` with its placeholders filled."""
    return TABLE[code].format(**values)
