"""kenshin (検針): Japan's next-generation smart meter system, after METI's 2022 report.

Packages, from the bottom up (a package only imports the ones above it in this list):

- ``kenshin.core``: JST time slots, supply point ids, meter specifications, registers, clocks.
- ``kenshin.grid``, ``kenshin.fleet``: distribution topology and the simulated meter population.
- ``kenshin.aroute``, ``kenshin.hes``, ``kenshin.mdms``: the A-route, head-end and meter data
  management system.
- ``kenshin.app``: the composition root: stores (``app.stores``), the embedded system
  (``app.system``: direct and wire), the service-mode processes (``app.services``), the live
  runner (``app.live``) and the one pacer (``app.pacing``).
- ``kenshin.api``, ``kenshin.cli``: the edges.
"""

__version__ = "0.1.0"
