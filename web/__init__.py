"""The JSON API: one blueprint (``api`` under /api/v1) whose views live in the modules here.

Importing the package registers every route on ``bp``: status (health, state, stream, the
OpenAPI document), reads (account, positions, executions, orders, quote, bars), trading (orders),
killswitch (the kill switch) and tradingview (the webhook). ``derivatives`` (option chains and
quotes, futures months) and ``screen`` (P&L, watchlist, quotes, symbols, alerts) are blueprints of
their own that reuse ``common``'s error shape.
"""

from web import derivatives, killswitch, reads, screen, status, trading, tradingview
from web.common import bp

__all__ = ["bp", "derivatives", "killswitch", "reads", "screen", "status", "trading", "tradingview"]
