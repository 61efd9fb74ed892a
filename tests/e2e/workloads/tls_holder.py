"""A TLS server on port 15008 presenting CHAIN (with KEY), as a rogue peer idgate would: it
completes handshakes and holds the connections open, reading whatever comes.

Usage: tls_holder.py CHAIN KEY"""
import socket
import ssl
import sys
import threading

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ctx.set_alpn_protocols(["h2"])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 15008))
s.listen(16)


def hold(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
        while t.recv(4096):
            pass
    except OSError:
        pass


while True:
    c, _ = s.accept()
    threading.Thread(target=hold, args=(c,), daemon=True).start()
