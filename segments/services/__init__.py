"""Writes of the segments app: definitions (``definitions``), recomputes and memberships."""
