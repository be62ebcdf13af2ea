"""The composition root: what the edges (the command line, ``kenshin up``) use to put the system
together from its parts. ``kenshin.app.stores`` opens every store from one option value."""
