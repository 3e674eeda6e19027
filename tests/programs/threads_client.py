# 32 threads x 10 blocking Fast Open connections, each socket dup()ed and
# both copies closed: the fd table under concurrent use.
import os, socket, threading

# TFO_TEST_OPTION=0: an unmodified program (auto mode's job).
OPTION = os.environ.get("TFO_TEST_OPTION", "1") == "1"

results = []
lock = threading.Lock()

def worker(t):
    for i in range(10):
        family, host = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))[(t + i) % 2]
        s = socket.socket(family, socket.SOCK_STREAM)
        if OPTION:
            s.setsockopt(socket.IPPROTO_TCP, 30, 1)
        s.connect((host, 7000))
        msg = f"thread {t} request {i}".encode()
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            got += s.recv(100)
        syn = bool(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[5] & 32)
        d = s.dup()  # dup and close both, in any order
        s.close()
        d.close()
        with lock:
            results.append((got == msg, syn))

threads = [threading.Thread(target=worker, args=(t,)) for t in range(32)]
for t in threads: t.start()
for t in threads: t.join()
print("echoed", sum(ok for ok, _ in results), "of", len(results))
print("data in SYN", sum(syn for _, syn in results))
