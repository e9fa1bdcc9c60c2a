"""URLs as they may be shown: in logs, errors, saved configs and webhook bodies."""

import re
from urllib.parse import urlsplit, urlunsplit


def display_url(url: str) -> str:
    """The URL without credentials or query string (presigned URLs carry signatures)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:  # a malformed host or port: cut by hand what must not show
        match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)", url)
        if match is None:
            return "(not a URL)"
        scheme, authority, path = match.groups()
        return f"{scheme}://{authority.rpartition('@')[2]}{path}"
