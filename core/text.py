"""Names that people give things (file names, titles, key names): without the invisible
characters that make a name display as something it is not."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator

# Cc: C0/C1 controls; Cf: format characters (bidi embeddings, overrides and isolates
# U+202A-U+202E, U+2066-U+2069, marks U+200E/U+200F, zero-width U+200B-U+200D, U+FEFF);
# Cs: lone surrogates, which cannot even be encoded as UTF-8.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def without_invisible(text: str) -> str:
    """`text` without control, format (bidi) and surrogate characters."""
    if text.isprintable():
        return text
    return "".join(c for c in text if unicodedata.category(c) not in INVISIBLE_CATEGORIES)


# a request field that is stored and shown to people: invisible characters dropped on the way in
VisibleText = Annotated[str, AfterValidator(without_invisible)]
