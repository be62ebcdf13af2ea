"""The B-route: ECHONET Lite between a smart meter and the customer's controller (SPEC B1–B2)."""
