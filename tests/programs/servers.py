# Test servers for the real-program matrix, each on a Fast Open listener
# (TCP_FASTOPEN set, so the namespace needs only the server bit 0x2).
#
# Usage: servers.py ADDRESS KIND:PORT ...   (runs until killed; prints
# "ready" once every listener is up)
#   http     HTTP/1.0: any GET gets "hello from KIND\n" (and the path)
#   ssh      server speaks first: "SSH-2.0-libtfo-test\r\n", then echoes
#            one line back as "ok LINE"
#   smtp     an SMTP dialogue: 220 banner, 250 for HELO/EHLO/MAIL/RCPT,
#            354/250 for DATA, 221 for QUIT
#   eof      reads until the client shuts down, then answers "got N bytes"
#   bigecho  echoes everything back (like tfo_echo_server)
import socket, sys, threading

TCP_FASTOPEN = 23


def listener(address, port, family):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 256)
    s.listen(128)
    return s


def http(c):
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = c.recv(4096)
        if not chunk:
            return
        request += chunk
    path = request.split(b" ")[1] if b" " in request else b"/"
    body = b"hello from http " + path + b"\n"
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def readline(f):
    line = f.readline()
    return line.rstrip(b"\r\n") if line else None


def ssh(c):
    c.sendall(b"SSH-2.0-libtfo-test\r\n")
    f = c.makefile("rb")
    line = readline(f)
    if line is not None:
        c.sendall(b"ok " + line + b"\r\n")


def smtp(c):
    c.sendall(b"220 libtfo-test ESMTP\r\n")
    f = c.makefile("rb")
    while True:
        line = readline(f)
        if line is None:
            return
        verb = line.split(b" ")[0].upper()
        if verb == b"QUIT":
            c.sendall(b"221 bye\r\n")
            return
        if verb == b"DATA":
            c.sendall(b"354 go ahead\r\n")
            while readline(f) not in (b".", None):
                pass
            c.sendall(b"250 queued\r\n")
        elif verb in (b"HELO", b"EHLO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            c.sendall(b"250 ok\r\n")
        else:
            c.sendall(b"502 unknown\r\n")


def eof(c):
    total = 0
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        total += len(chunk)
    c.sendall(b"got %d bytes\n" % total)


def bigecho(c):
    while True:
        chunk = c.recv(65536)
        if not chunk:
            return
        c.sendall(chunk)


def serve(s, handler):
    while True:
        c, _ = s.accept()

        def run(c=c):
            try:
                handler(c)
            except OSError:
                pass
            finally:
                c.close()

        threading.Thread(target=run, daemon=True).start()


def main():
    address = sys.argv[1]
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    handlers = {"http": http, "ssh": ssh, "smtp": smtp, "eof": eof, "bigecho": bigecho}
    threads = []
    for spec in sys.argv[2:]:
        kind, port = spec.split(":")
        s = listener(address, int(port), family)
        threads.append(threading.Thread(target=serve, args=(s, handlers[kind]), daemon=True))
    for t in threads:
        t.start()
    print("ready", flush=True)
    threading.Event().wait()


main()
