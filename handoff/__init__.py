"""Tickets, routing, SLAs and the agents' side of a conversation."""
