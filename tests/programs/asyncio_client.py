# 200 concurrent Fast Open connections from one asyncio event loop (epoll,
# non-blocking connect that returns 0, first write from sock_sendall).
import asyncio, os, socket, sys

# TFO_TEST_OPTION=0: an unmodified program (auto mode's job).
OPTION = os.environ.get("TFO_TEST_OPTION", "1") == "1"

async def one(loop, family, host, i):
    s = socket.socket(family, socket.SOCK_STREAM)
    if OPTION:
        s.setsockopt(socket.IPPROTO_TCP, 30, 1)
    s.setblocking(False)
    await loop.sock_connect(s, (host, 7000))
    msg = f"request {i}".encode()
    await loop.sock_sendall(s, msg)
    got = b""
    while len(got) < len(msg):
        got += await loop.sock_recv(s, 100)
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    s.close()
    return got == msg, bool(info[5] & 32)

async def main():
    loop = asyncio.get_running_loop()
    results = await asyncio.gather(*[one(loop, f, h, i) for i in range(100) for f, h in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))])
    print("echoed", sum(ok for ok, _ in results), "of", len(results))
    print("data in SYN", sum(syn for _, syn in results))

asyncio.run(main())
