# One Fast Open request with the kernel's own TCP_FASTOPEN_CONNECT, then what
# TCP_INFO says about it: whether the SYN's data was acknowledged and, if
# not, why (tcpi_fastopen_client_fail: 1 no cookie, 2 data not acknowledged,
# 3 SYN with data lost and a plain SYN retransmitted).
# Usage: python3 fastopen_info.py ADDRESS PORT MESSAGE
import errno, socket, sys, time

host, port, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_TCP, 30, 1)  # TCP_FASTOPEN_CONNECT
start = time.monotonic()
try:
    s.connect((host, port))
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
except OSError as e:
    print("error:", errno.errorcode.get(e.errno, e.errno))
    sys.exit(1)
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
print("reply:", got.decode())
print("ms:", round((time.monotonic() - start) * 1000))
print("syn_data_acked:", int(bool(info[5] & 32)))  # tcpi_options & TCPI_OPT_SYN_DATA
print("fastopen_client_fail:", (info[7] >> 1) & 3)  # bits 1-2 of byte 7
