from tests.integration.links.link_env import runtime, simulator

__all__ = ["runtime", "simulator"]
