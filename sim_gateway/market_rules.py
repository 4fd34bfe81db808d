"""Market rules (price increments by price band) behind ``marketRuleIds`` and ``reqMarketRule``.

Rule 26 (one cent everywhere) is the id IB gives US stocks; the option rule has IB's two bands
(pennies below 3.00, nickels from 3.00). Any other minimum tick gets a rule whose id encodes the
tick in millionths (``TICK_RULE_BASE + tick · 10⁶``), so every contract has a rule and every
id the simulator hands out can be answered.
"""

from __future__ import annotations

from .types import Contract

Increments = tuple[tuple[float, float], ...]  # (low edge, increment), by ascending low edge

STOCK_RULE = 26
OPTION_RULE = 32
QUARTER_RULE = 67
TICK_RULE_BASE = 1_000_000
RULES: dict[int, Increments] = {
    STOCK_RULE: ((0.0, 0.01),),
    OPTION_RULE: ((0.0, 0.01), (3.0, 0.05)),
    QUARTER_RULE: ((0.0, 0.25),),
}
_BY_TICK = {0.01: STOCK_RULE, 0.25: QUARTER_RULE}


def rule_id(contract: Contract) -> int:
    """The market rule of a contract (the same on every exchange it trades on)."""
    if contract.sec_type == "OPT":
        return OPTION_RULE
    return _BY_TICK.get(contract.min_tick, TICK_RULE_BASE + round(contract.min_tick * 1_000_000))


def rule_ids(contract: Contract, valid_exchanges: str) -> str:
    """contractDetails.marketRuleIds: one id per valid exchange, comma-separated."""
    count = len([name for name in valid_exchanges.split(",") if name]) or 1
    return ",".join([str(rule_id(contract))] * count)


def increments(market_rule_id: int) -> Increments | None:
    """The price bands of a rule id, None if no contract could carry it."""
    if market_rule_id in RULES:
        return RULES[market_rule_id]
    millionths = market_rule_id - TICK_RULE_BASE
    if 0 < millionths < TICK_RULE_BASE:
        return ((0.0, millionths / 1_000_000),)
    return None


def increment_at(contract: Contract, price: float) -> float:
    """The price increment that applies to ``contract`` at ``price``."""
    bands = increments(rule_id(contract)) or ((0.0, contract.min_tick),)
    step = bands[0][1]
    for edge, increment in bands:
        if price >= edge - 1e-9:
            step = increment
    return step
