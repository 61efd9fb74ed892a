"""A TLS client presenting CHAIN (with KEY) to a peer idgate's tunnel port at HOST:PORT: prints
"accepted" if the peer speaks HTTP/2 to it (its SETTINGS arrive), "refused" if the peer ends
the connection, "no answer" if it says nothing.

Usage: tls_caller.py HOST PORT CHAIN KEY"""
import socket
import ssl
import sys

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
ctx.set_alpn_protocols(["h2"])
try:
    s = ctx.wrap_socket(socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5))
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    print("accepted" if s.recv(9) else "refused")
except TimeoutError:
    print("no answer")
except (ssl.SSLError, OSError):
    print("refused")
