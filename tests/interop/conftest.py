"""The ESME libraries we did not write bind to the simulator of the simulator tests."""

from tests.integration.simulator.sim_env import sim

__all__ = ["sim"]
