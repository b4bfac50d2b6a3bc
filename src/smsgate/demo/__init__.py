"""``smsgate demo``: the gateway, the built-in operator, a sample merchant and its services."""
