"""A TLS server on PORT presenting CERT (with KEY) that requires a client certificate issued
under CA: prints "listening", then the first client certificate it gets (DER, hex), and exits.

Usage: tls_capture.py CERT KEY CA PORT"""
import socket
import ssl
import sys

cert, key, ca, port = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(port)))
s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    try:
        t = ctx.wrap_socket(c, server_side=True)
    except (ssl.SSLError, OSError):
        continue
    print(t.getpeercert(binary_form=True).hex(), flush=True)
    t.close()
    break
