from tests.integration.links.link_env import runtime

__all__ = ["runtime"]
