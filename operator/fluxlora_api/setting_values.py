"""How one flag or environment string spells a list or a map: JSON, or the short forms people
type (`a, b` and `k=v,k2=v2`). The operator's settings and the dataset limits read them so;
lists of networks are also checked to be CIDRs."""

import ipaddress
import json
from typing import Any


def _json(text: str, kind: str, example: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"not a JSON {kind}; give one like {example}, or the short form") from None


def comma_list(value: Any) -> Any:
    """`a, b` or `["a", "b"]` as a list; anything but a string is left to the model."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return _json(text, "list", '["a", "b"]')
    return [item.strip() for item in text.split(",") if item.strip()]


def pair_map(value: Any) -> Any:
    """`k=v,k2=v2` or `{"k": "v"}` as a map; anything but a string is left to the model."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        return _json(text, "object", '{"k": "v"}')
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"expected a JSON object or k=v,k=v, got {value!r}")
    return {key.strip(): item.strip() for key, item in pairs}


def network(text: str) -> str:
    """`text` as a canonical CIDR; a clear error says what is wrong with it."""
    try:
        return str(ipaddress.ip_network(text.strip()))
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a network in CIDR notation (like 10.0.0.0/8 or fd00::/8)"
        ) from None
    raise ValueError(f"{text!r} has bits set after the prefix; did you mean {loose}?")


def network_list(value: Any) -> list[str]:
    """Networks as a comma_list, each checked and made canonical."""
    items = comma_list(value)
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError("expected a list of networks (CIDRs)")
    return [network(item) for item in items]
