"""Loopback ports chosen at run time, so that runs on one machine never collide."""

from __future__ import annotations

import asyncio
import errno
import socket
import time

from claritycast.errors import ConfigError

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel says is free now; the caller binds it soon after."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def bind(host: str, port: int, setting: str = "CLARITYCAST_WEB_PORT") -> socket.socket:
    """A listening socket on ``host:port``, or a `ConfigError` naming the setting at fault."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        in_use = exc.errno == errno.EADDRINUSE
        raise ConfigError(
            setting if in_use else setting.replace("_PORT", "_HOST"),
            f"cannot listen on {host}:{port}: "
            + ("the port is in use" if in_use else str(exc.strerror)),
        ) from None
    sock.listen(128)
    return sock


def is_listening(port: int, host: str = LOOPBACK, timeout_s: float = 0.25) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


async def wait_listening(port: int, timeout_s: float, host: str = LOOPBACK) -> bool:
    """Poll until ``host:port`` accepts connections; False when time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(is_listening, port, host):
            return True
        await asyncio.sleep(0.05)
    return False
