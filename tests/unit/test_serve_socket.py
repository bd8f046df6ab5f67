"""The listening socket `feedctl serve --workers N` hands its workers says it is TCP, so the
connections accepted from it get TCP_NODELAY (without it, each keep-alive response waits
for the client's delayed ACK)."""

from __future__ import annotations

import asyncio
import socket

from feedctl.api.server import tcp_listener


def test_the_workers_listener_is_declared_tcp_and_its_connections_get_nodelay() -> None:
    raw = socket.socket(socket.AF_INET)  # as uvicorn's Config.bind_socket makes it: proto 0
    raw.bind(("127.0.0.1", 0))
    listener = tcp_listener(raw)
    assert listener.proto == socket.IPPROTO_TCP
    assert listener.get_inheritable()

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0


def test_a_unix_socket_is_left_alone() -> None:
    with socket.socket(socket.AF_UNIX) as unix:
        assert tcp_listener(unix) is unix
