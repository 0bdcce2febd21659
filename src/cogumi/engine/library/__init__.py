"""The attack library: techniques, scripts and styles as data, plus their loader.

``load_builtin()`` returns the validated built-in library; ``parse_custom()``
validates a customer's scripts with the same models; ``render_variants()`` turns
a step into styled variants and ``fill()`` puts a turn's values into one.
"""

from cogumi.engine.library.loader import (
    CustomSet,
    Library,
    LibraryError,
    Script,
    Step,
    Technique,
    fill,
    load_builtin,
    parse_custom,
)
from cogumi.engine.library.styles import STYLE_NAMES, Variant, render_variants

__all__ = [
    "STYLE_NAMES",
    "CustomSet",
    "Library",
    "LibraryError",
    "Script",
    "Step",
    "Technique",
    "Variant",
    "fill",
    "load_builtin",
    "parse_custom",
    "render_variants",
]
