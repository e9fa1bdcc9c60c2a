"""Which addresses a download may connect to, address by address."""

import ipaddress

import pytest

from fluxlora_net.addresses import parse_address, refusal

NETWORKS = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.1.0.0/16", "fd12::/16")]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.5", "a private address"),
        ("172.16.3.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.251", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("198.18.0.1", "a reserved address"),
        ("192.0.2.10", "a documentation address"),
        ("2001:db8::1", "a documentation address"),
        ("fd12:3456::1", "a unique-local (private) address"),
        ("fc00::1", "a unique-local (private) address"),
        ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped
        ("::ffff:10.0.0.5", "a private address"),
        ("64:ff9b::a00:5", "a private address"),  # NAT64 of 10.0.0.5
        ("2002:a00:5::1", "a private address"),  # 6to4 of 10.0.0.5
    ],
)
def test_non_public_addresses_are_refused_unless_allowed(address, kind):
    refused = refusal(parse_address(address))
    assert refused is not None and refused.kind == kind and not refused.always


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("::ffff:169.254.169.254", "a cloud metadata address"),
        ("64:ff9b::a9fe:a9fe", "a cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("::ffff:169.254.1.1", "a link-local address"),
    ],
)
def test_link_local_and_metadata_addresses_are_refused_whatever_is_allowed(address, kind):
    everything = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    refused = refusal(parse_address(address), everything)
    assert refused is not None and refused.kind == kind and refused.always


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_are_allowed(address):
    assert refusal(parse_address(address)) is None


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("::ffff:127.0.0.1", True),
        ("10.1.2.3", True),
        ("10.2.0.1", False),
        ("fd12::1", True),
        ("fd13::1", False),
        ("192.168.1.1", False),
    ],
)
def test_allowed_networks_lift_the_refusal_only_inside_them(address, allowed):
    assert (refusal(parse_address(address), NETWORKS) is None) == allowed
