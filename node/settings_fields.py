"""The field helper every settings section is declared with (node/settings.py):
a field's default, range and description travel in its metadata, from which
:data:`node.settings.SCHEMA` and :data:`node.settings.DESCRIPTIONS` are derived."""

from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any

# (type, default, lower bound, upper bound): default None means required,
# except in [consensus], whose keys all default to None (not set).
Spec = tuple[type, Any, int | None, int | None]


def setting(default: Any = MISSING, *, lo: int | None = None, hi: int | None = None,
            doc: str) -> Any:
    """A settings field: no ``default`` means required."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "doc": doc})
