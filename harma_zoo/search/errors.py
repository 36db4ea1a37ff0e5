"""The one error type of archive search: bad input, told in one line that names the file or value."""

from __future__ import annotations


class SearchError(ValueError):
    """An archive, index folder, query or option that cannot be used as given (the message says why)."""
