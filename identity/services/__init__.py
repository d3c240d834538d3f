"""Writes of the identity graph, one module per noun: ``identifiers``, ``resolution`` (the
resolver), ``observations``, ``profiles`` (derived fields), ``unmerge``, ``rebuild``.

Only ``identifiers_get_or_create`` is re-exported here: ingestion imports it to encrypt at
ingest, and the resolver imports ingestion, so re-exporting the resolver would be a cycle.
"""

from identity.services.identifiers import identifiers_get_or_create

__all__ = ["identifiers_get_or_create"]
