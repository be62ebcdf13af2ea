"""Distribution topology: area → substation → 6.6 kV feeder → pole transformer → meter."""

from kenshin.grid.topology import Topology, TopologyConfig, build_topology

__all__ = ["Topology", "TopologyConfig", "build_topology"]
