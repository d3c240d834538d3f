"""Identity graph: identifiers, evidence edges, resolution and unified profiles."""
