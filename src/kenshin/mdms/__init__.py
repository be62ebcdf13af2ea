"""Meter data management: versioned reading storage behind one interface, and the ingest service."""
