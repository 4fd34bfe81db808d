"""Our orders' write path behind ``order_handler.OrderHandler``: lifecycle, tracking,
placement, reconciliation and the typed commands (see ARCHITECTURE.md, "The order state
machine")."""
