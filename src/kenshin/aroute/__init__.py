"""The A-route: the wire format meters and the head-end speak, per-meter keys and replay
windows, the communication network model, and the transports (in-process, MQTT)."""
