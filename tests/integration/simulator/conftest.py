from tests.integration.simulator.sim_env import sim

__all__ = ["sim"]
