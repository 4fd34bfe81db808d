"""Black-Scholes prices, greeks and implied volatility for the simulated option chains.

IB's conventions for ``tickOptionComputation``: vega per 1 % change of volatility, theta per
calendar day, gamma per 1.0 move of the underlying; ``impliedVol`` −1 and ``delta`` −2 mean
"not computed".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

NOT_COMPUTED = -1.0  # impliedVol, optPrice, pvDividend
DELTA_NOT_COMPUTED = -2.0
MIN_YEARS = 1.0 / (365.0 * 24 * 60)  # a minute: keeps d1/d2 finite at expiry
IV_RANGE = (0.005, 5.0)


@dataclass(frozen=True)
class Greeks:
    """One option computation (the fields of a tickOptionComputation message)."""

    implied_vol: float
    delta: float
    price: float
    pv_dividend: float
    gamma: float
    vega: float
    theta: float
    und_price: float


def _cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _d1_d2(
    spot: float, strike: float, years: float, rate: float, vol: float
) -> tuple[float, float]:
    root = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / root
    return d1, d1 - root


def price(right: str, spot: float, strike: float, years: float, rate: float, vol: float) -> float:
    """Black-Scholes value of a European call ("C") or put ("P")."""
    years = max(years, MIN_YEARS)
    d1, d2 = _d1_d2(spot, strike, years, rate, vol)
    discount = strike * math.exp(-rate * years)
    if right == "C":
        return spot * _cdf(d1) - discount * _cdf(d2)
    return discount * _cdf(-d2) - spot * _cdf(-d1)


def greeks(right: str, spot: float, strike: float, years: float, rate: float, vol: float) -> Greeks:
    """Model value and greeks at ``vol``."""
    years = max(years, MIN_YEARS)
    d1, d2 = _d1_d2(spot, strike, years, rate, vol)
    discount = strike * math.exp(-rate * years)
    gamma = _pdf(d1) / (spot * vol * math.sqrt(years))
    vega = spot * _pdf(d1) * math.sqrt(years) / 100.0
    decay = -spot * _pdf(d1) * vol / (2.0 * math.sqrt(years))
    if right == "C":
        delta, theta = _cdf(d1), decay - rate * discount * _cdf(d2)
    else:
        delta, theta = _cdf(d1) - 1.0, decay + rate * discount * _cdf(-d2)
    value = price(right, spot, strike, years, rate, vol)
    return Greeks(vol, delta, value, 0.0, gamma, vega, theta / 365.0, spot)


def implied_vol(
    right: str, target: float, spot: float, strike: float, years: float, rate: float
) -> float | None:
    """The volatility at which the model value is ``target`` (bisection), None if out of range."""
    low, high = IV_RANGE
    if (
        not price(right, spot, strike, years, rate, low)
        <= target
        <= price(right, spot, strike, years, rate, high)
    ):
        return None
    for _ in range(60):
        middle = 0.5 * (low + high)
        if price(right, spot, strike, years, rate, middle) < target:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def greeks_at_price(
    right: str, target: float, spot: float, strike: float, years: float, rate: float
) -> Greeks:
    """Greeks at the volatility implied by ``target`` (a bid or an ask); "not computed" if none."""
    vol = implied_vol(right, target, spot, strike, years, rate)
    if vol is None:
        return Greeks(NOT_COMPUTED, DELTA_NOT_COMPUTED, target, NOT_COMPUTED, 0.0, 0.0, 0.0, spot)
    return replace(greeks(right, spot, strike, years, rate, vol), price=target)
