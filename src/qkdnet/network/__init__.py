"""The network layer: scenario files, topology, routing through trusted nodes, the planner and
the runtime that starts a whole QKD network (KMEs, key-generation workers, relays)."""

from qkdnet.network.scenario import (
    LinkSpec,
    Scenario,
    ScenarioError,
    SiteSpec,
    load_scenario,
    parse_scenario,
)

__all__ = ["LinkSpec", "Scenario", "ScenarioError", "SiteSpec", "load_scenario", "parse_scenario"]
