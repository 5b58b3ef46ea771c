"""Resolve chosen host names to a fixed address and port, like curl's --connect-to.

The request URL, the Host header and TLS verification keep the real name (db5.notify.windows.com),
only the TCP connection goes elsewhere: an egress proxy in production, the WNS emulator locally.
Hosts not configured resolve through normal DNS.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class ConnectToResolver(AbstractResolver):
    def __init__(self, connect_to: Mapping[str, str]) -> None:
        self._targets: list[tuple[str, str, int]] = []
        for suffix, target in connect_to.items():
            address, _, port = target.rpartition(":")
            if not address or not port.isdigit():
                raise ValueError(f"connect_to target for {suffix!r} must be address:port")
            self._targets.append((suffix.lower().lstrip("."), address.strip("[]"), int(port)))
        self._default = DefaultResolver()

    def _target(self, host: str) -> tuple[str, int] | None:
        host = host.lower()
        for suffix, address, port in self._targets:
            if host == suffix or host.endswith("." + suffix):
                return address, port
        return None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = self._target(host)
        if target is None:
            return await self._default.resolve(host, port, family)
        address, target_port = target
        infos = await self._default.resolve(address, target_port, family)
        return [ResolveResult(hostname=host, host=i["host"], port=target_port, family=i["family"],
                              proto=i["proto"], flags=i["flags"]) for i in infos]

    async def close(self) -> None:
        await self._default.close()
