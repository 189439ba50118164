"""A type no model file may hold: building it runs code (it writes the file its state names).

The registry tests put one in a skops file to show that Roost refuses the file before building anything.
It lives in an importable module on purpose: a loader that trusted it would find it and run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Marker:
    """Writes ``path`` when skops (or pickle) rebuilds it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["path"]).write_text("a model file ran code\n")
        self.__dict__.update(state)
