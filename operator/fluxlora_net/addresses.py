"""Which IP addresses a `data` download may connect to. A URL is user input, so without this
rule a dataset could make the trainer fetch cloud credentials from the metadata service or
probe the cluster's private services.

- link-local and cloud metadata addresses: never;
- any other non-public address (loopback, private, shared/CGNAT, unique-local, multicast,
  reserved, ...): only inside the operator's allowed networks;
- public addresses: always.

IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that address too.
The table is our own rather than ipaddress.is_global, whose answers differ between Python
versions (and call multicast global)."""

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
LINK_LOCAL = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))

# Non-public ranges, most specific first where they nest; the text completes "X is ...".
_NON_PUBLIC: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(network), kind)
    for network, kind in (
        ("0.0.0.0/8", "an unspecified address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "a reserved address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a reserved address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a reserved address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("64:ff9b:1::/48", "a private address"),
        ("::/8", "a reserved address"),
        ("100::/64", "a reserved address"),
        ("2001::/23", "a reserved address"),
        ("2001:db8::/32", "a documentation address"),
        ("fc00::/7", "a unique-local (private) address"),
        ("fec0::/10", "a site-local (private) address"),
        ("ff00::/8", "a multicast address"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Refusal:
    """Why an address may not be connected to."""

    address: IPAddress
    kind: str  # completes "X is ...", e.g. "a private address"
    always: bool  # True: no allowed network can lift it


def parse_address(text: str) -> IPAddress:
    """An address as getaddrinfo gives it (an IPv6 one may carry a %scope)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64 or 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def refusal(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> Refusal | None:
    """None if a download may connect to `address`; else why not."""
    inner = embedded_ipv4(address)
    candidates = [address] if inner is None else [address, inner]
    for candidate in candidates:
        if candidate in METADATA_ADDRESSES:
            return Refusal(address, "a cloud metadata address", always=True)
        if any(candidate in network for network in LINK_LOCAL):
            return Refusal(address, "a link-local address", always=True)
    if any(candidate in network for candidate in candidates for network in allowed):
        return None
    # An IPv6 form of an IPv4 address is as public as that address (NAT64 needs this).
    judged = address if inner is None else inner
    for network, kind in _NON_PUBLIC:
        if judged in network:
            return Refusal(address, kind, always=False)
    return None
