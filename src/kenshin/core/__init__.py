"""Pure domain primitives: no I/O, no clock calls, no imports from the rest of kenshin."""
