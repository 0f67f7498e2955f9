"""Text from callers, made safe to store and to show back."""

from __future__ import annotations

import posixpath
import unicodedata

MAX_FILENAME = 255
SHOWN = 64  # characters of a caller's value echoed in an error message
# Reserved on common file systems, and markup when a name is shown in a page.
_RESERVED = str.maketrans({c: "_" for c in '<>:"|?*\\'})


def clean_filename(name: str, default: str = "upload.jsonl") -> str:
    """A filename as sent, made harmless: no directories, no control or bidirectional
    formatting characters (NUL, RLO...), no reserved characters, at most 255 characters
    (the extension kept), never empty."""
    base = posixpath.basename(name.replace("\\", "/"))
    kept = "".join(c for c in base if unicodedata.category(c) not in ("Cc", "Cf", "Cs"))
    kept = kept.translate(_RESERVED).strip(" .")
    if len(kept) > MAX_FILENAME:
        stem, dot, extension = kept.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            kept = stem[: MAX_FILENAME - len(extension) - 1] + "." + extension
        else:
            kept = kept[:MAX_FILENAME]
    return kept or default


def shown(value: object, limit: int = SHOWN) -> str:
    """A caller's value as an error message may echo it: at most `limit` characters."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
