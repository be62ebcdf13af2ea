"""Outage and restoration detection (issue 15; SPEC R1, R2): from what the head-end sees to the
devices that lost power. ``inference`` is the pure core; the engine, its events and the drill
build on it."""
