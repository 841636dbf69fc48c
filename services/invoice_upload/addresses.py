"""Which addresses an invoice fetch may connect to: public unicast only, decided from
tables here, not from `ipaddress.is_global` (whose answers change between Python patch
releases: 3.11.7 calls NAT64 and 6to4 addresses global).

IPv6 forms that carry an IPv4 address are unwrapped and the IPv4 address is judged:
IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible
`::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` (RFC 6052), 6to4 `2002:AABB:CCDD::/48` and Teredo
(server and client). In an IPv6-only cluster with NAT64, `64:ff9b::a9fe:a9fe` reaches
169.254.169.254: it is refused like the address it wraps.
"""

from __future__ import annotations

import ipaddress

_V4_REFUSED = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # this network
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (192.0.0.8 among them)
        "192.0.2.0/24",  # documentation
        "192.31.196.0/24",  # AS112
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # private
        "192.175.48.0/24",  # AS112 direct delegation
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)

_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_REFUSED = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): translates to anything inside
        "2001::/23",  # IETF protocol assignments (Teredo is unwrapped before)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4 (unwrapped before; what is left here is malformed)
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TEREDO = ipaddress.IPv6Network("2001::/32")


def _public_v4(ip: ipaddress.IPv4Address) -> bool:
    return not any(ip in net for net in _V4_REFUSED)


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 form carries, or None when it carries none."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _TRANSLATED or ip in _NAT64 or ip in _COMPATIBLE:
        return [low32]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip in _TEREDO and ip.teredo is not None:
        server, client = ip.teredo
        return [server, client]
    return None


def is_public(address: str) -> bool:
    """Whether a fetch may connect to `address` (an IPv4 or IPv6 literal)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        return _public_v4(ip)
    if ip.scope_id:
        return False  # a zone index names a local interface
    embedded = _embedded_v4(ip)
    if embedded is not None:
        return all(_public_v4(v4) for v4 in embedded)
    # Only global unicast (2000::/3) outside the special ranges; everything else —
    # ULA fc00::/7, link-local, site-local fec0::/10, multicast, discard — is not.
    return ip in _V6_GLOBAL_UNICAST and not any(ip in net for net in _V6_REFUSED)


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback
