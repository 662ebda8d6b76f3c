"""Addresses Postroom does not send to: after a hard bounce, a complaint, or by hand."""
