"""Connects to [ADDRESS]:PORT over IPv6 twice: without, then with a destination options header
in front of TCP (a PadN option, 8 bytes). Prints one line per attempt: "reached <answer>" or
"failed <error's name>".

Usage: v6_dstopts_clients.py ADDRESS PORT"""
import socket
import sys

for options in (None, b"\x00\x00\x01\x04\x00\x00\x00\x00"):
    s = socket.socket(socket.AF_INET6)
    s.settimeout(1.5)
    if options:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, options)
    try:
        s.connect((sys.argv[1], int(sys.argv[2])))
        print("reached", s.recv(10).decode())
    except OSError as e:
        print("failed", type(e).__name__)
