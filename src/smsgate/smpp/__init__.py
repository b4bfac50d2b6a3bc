"""smpp layer."""
