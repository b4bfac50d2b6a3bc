"""Operator links: our SMPP 3.4 ESME client to operators' SMSCs (MO, MT, delivery receipts).

See docs/smpp.md. ``LinkManager`` runs one ``OperatorLink`` per enabled SMPP operator that this
process owns.
"""

from smsgate.links.link import OperatorLink
from smsgate.links.manager import LinkManager, load_link_settings
from smsgate.links.settings import LinkSettings, link_settings
from smsgate.links.state import LinkBoard, LinkState, board_for

__all__ = [
    "LinkBoard",
    "LinkManager",
    "LinkSettings",
    "LinkState",
    "OperatorLink",
    "board_for",
    "link_settings",
    "load_link_settings",
]
