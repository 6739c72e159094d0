"""JSON-schema keywords that hold subschemas: where a closed-object rule must look.

Claude's structured outputs and strict tools take only closed objects, at any depth. The
client closes them (``_structured.objects_closed``) and the emulator finds an open one
(``emulator.engine``), walking the same keywords from here. Standard library only, so the
emulator reads it without loading LangChain.
"""

from __future__ import annotations

__all__ = ["SUBSCHEMA_LISTS", "SUBSCHEMA_MAPS"]

SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
"""Keywords whose value maps names to subschemas."""

SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
"""Keywords whose value is a list of subschemas."""
