"""Segments: definition DSL, computed traits, recompute workers and membership history."""
