"""The A-route: what meters send to the head-end, and the transports that carry it."""
