"""The segment definition language: parse and validate (``definition_parse``), then compile to
one SQL query (``members_query``). docs/segments.md is its reference."""

from segments.dsl.compiler import members_query
from segments.dsl.nodes import Definition
from segments.dsl.validation import DefinitionError, definition_parse

__all__ = ["Definition", "DefinitionError", "definition_parse", "members_query"]
