"""Caption cleaning of the reference protocol (docs/recipes.md, "Preprocessing")."""

from __future__ import annotations

# Characters the reference deletes, and the two it turns into spaces.
DELETED_CHARACTERS = ",.'!?\"()*#:;~"
SPACED_CHARACTERS = "-/"

_TABLE = str.maketrans({**dict.fromkeys(DELETED_CHARACTERS, None), **dict.fromkeys(SPACED_CHARACTERS, " ")})


def clean_caption(text: str, max_words: int = 30) -> str:
    """Lower-case, delete ``, . ' ! ? " ( ) * # : ; ~``, turn ``-`` and ``/`` into spaces,
    collapse whitespace and keep at most ``max_words`` words.

    A caption made only of deleted characters cleans to the empty string.
    """
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    words = text.lower().translate(_TABLE).split()
    return " ".join(words[:max_words])
