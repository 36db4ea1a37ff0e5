"""The hub: the zoo's registry index, verified downloads into the cache, and ``zoo:NAME`` references.

The lowest layer that knows about the zoo: model building may use it, it uses nothing above it.
``index`` (registry/*.yaml as checked entries), ``download`` (a URL into the verified cache),
``entries`` (a registry entry's file or loader), ``references`` (``zoo:NAME`` weights).
"""
