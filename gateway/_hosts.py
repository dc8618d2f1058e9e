"""Ollama's Host-header rule against DNS rebinding (server/routes.go ``allowedHostsMiddleware``, ``allowedHost``).

It applies only when the gateway listens on a loopback address (as Ollama's applies only when ``OLLAMA_HOST`` is
loopback); then a Host that is neither a loopback/private/unspecified/local-interface IP, nor empty, ``localhost``,
the machine's hostname or a name under ``.localhost``/``.local``/``.internal`` gets 403 with an empty body, and an
allowed name answers ``OPTIONS`` with 204.
"""

from __future__ import annotations

import fcntl
import functools
import ipaddress
import socket
import struct
from typing import Optional, Set

__all__ = ["host_allowed", "split_host"]

# Go netip Addr.IsPrivate: RFC 1918 and RFC 4193 only (not link-local, CGNAT or 198.18/15).
_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]
_TLDS = (".localhost", ".local", ".internal")
_SIOCGIFADDR = 0x8915
_local_ips: Optional[Set[str]] = None


def split_host(host: str) -> str:
    """Go ``net.SplitHostPort``'s host, or the whole value when it has no port (the middleware then uses it as is)."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0 and host[end + 1 : end + 2] == ":":
            return host[1:end]
        return host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _interface_ips() -> Set[str]:
    """routes.go ``isLocalIP``: the addresses of this machine's interfaces (IPv4 via SIOCGIFADDR, IPv6 via /proc)."""
    global _local_ips  # noqa: PLW0603 - computed once per process
    if _local_ips is not None:
        return _local_ips
    ips: Set[str] = set()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _index, name in socket.if_nameindex():
                try:
                    packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                    ips.add(socket.inet_ntoa(packed[20:24]))
                except OSError:
                    continue
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as fh:
            for line in fh:
                raw = line.split()[0]
                ips.add(str(ipaddress.IPv6Address(int(raw, 16))))
    except (OSError, ValueError, IndexError):
        pass
    _local_ips = ips
    return ips


def _ip_allowed(text: str) -> Optional[bool]:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # netip unmaps 4-in-6 before IsLoopback/IsPrivate
    if addr.is_loopback or addr.is_unspecified or any(addr in net for net in _PRIVATE):
        return True
    plain = str(addr).split("%", 1)[0]
    return plain in _interface_ips() or None


@functools.lru_cache(maxsize=1024)  # clients choose Host values: a bounded cache of the answers
def host_allowed(host_header: str) -> bool:
    host = split_host(host_header)
    if _ip_allowed(host):
        return True
    host = host.lower()
    if host in ("", "localhost") or host == socket.gethostname().lower():
        return True
    return host.endswith(_TLDS)
