"""The outbound HTTP client's own cost: the same keep-alive requests to a
minimal server (another process) sent by a bare trio socket loop and by auxot's
pool; the difference per request, and connections opened."""

from __future__ import annotations

import subprocess
import sys
import time

import trio

from auxot.http import Pool

# A minimal HTTP/1.1 keep-alive server: blocking sockets, a thread per connection,
# a fixed 2-byte answer.  Run in its own process so it does not share our CPU time slice.
MINI_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
MINI_SERVER = r"""
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(16); print(s.getsockname()[1], flush=True)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); buf = b""
    while True:
        data = c.recv(65536)
        if not data: break
        buf += data
        while b"\r\n\r\n" in buf:
            _, buf = buf.split(b"\r\n\r\n", 1); c.sendall(RESPONSE)
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


async def client_scenario(port: int, n: int) -> dict[str, object]:
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    expected = len(MINI_RESPONSE)

    async def raw(count: int) -> list[float]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        times = []
        for _ in range(count):
            began = time.perf_counter()
            await stream.send_all(request)
            got = 0
            while got < expected:
                got += len(await stream.receive_some(65536))
            times.append(time.perf_counter() - began)
        await stream.aclose()
        return times

    pool = Pool(f"http://127.0.0.1:{port}")

    async def pooled(count: int) -> list[float]:
        times = []
        for _ in range(count):
            began = time.perf_counter()
            async with pool.request("GET", "/") as resp:
                await resp.read()
            times.append(time.perf_counter() - began)
        return times

    opened_before = pool.opened
    await pooled(100)
    opened_for_100 = pool.opened - opened_before
    raw_times: list[float] = []
    pool_times: list[float] = []
    for _ in range(10):  # interleaved blocks, so drift hits both alike
        raw_times += await raw(n // 10)
        pool_times += await pooled(n // 10)
    await pool.aclose()
    return {"opened_for_100": opened_for_100, "raw": raw_times, "pool": pool_times}



def run(requests: int) -> dict[str, object]:
    code = MINI_SERVER.replace("RESPONSE", repr(MINI_RESPONSE))
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        return trio.run(client_scenario, port, requests)
    finally:
        server.kill()
        server.wait()
