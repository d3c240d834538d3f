"""Writes of the identity graph, one module per noun. Import from here."""

from identity.services.identifiers import identifiers_get_or_create

__all__ = ["identifiers_get_or_create"]
