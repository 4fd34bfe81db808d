"""Decoding of placeOrder (reference section 3.1): the order's fields in wire order, the ones
the simulator uses read, the rest skipped.
"""

from __future__ import annotations

from typing import Any

from .codec import (
    UNSET_DOUBLE,
    DecodeError,
    FieldReader,
    read_contract,
)
from .request_decoders import _skip_groups
from .request_types import PlaceOrder
from .types import (
    OrderRequest,
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
    return PlaceOrder(
        OrderRequest(order_id=order_id, contract=contract, **main, **extended, **trail, **flags)
    )
