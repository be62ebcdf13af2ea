"""The ``kenshin`` command line (typer + rich), one module per command group.

- :mod:`~kenshin.cli.options`: the options the commands share, each defined once;
- :mod:`~kenshin.cli.simulate`: ``simulate``;
- :mod:`~kenshin.cli.serve`: ``serve`` and ``up``;
- :mod:`~kenshin.cli.service`: service mode, ``install``, ``hes`` and ``fleet``;
- :mod:`~kenshin.cli.mdms`: ``vee`` and ``archive``;
- :mod:`~kenshin.cli.broute`: ``broute serve``, ``wisun`` and ``credentials``;
- :mod:`~kenshin.cli.plan_network`: ``plan-network``;
- :mod:`~kenshin.cli.drill`: ``drill faults``;
- :mod:`~kenshin.cli.root`: the app and :func:`main` (the ``kenshin`` entry point).

Stores are opened by :mod:`kenshin.app.stores`. Bad arguments get a one-line error on stderr
and exit code 2.
"""

from kenshin.cli.root import app, main

__all__ = ["app", "main"]
