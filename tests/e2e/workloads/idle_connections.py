"""Opens PER connections to HOST:PORT from each source address in SOURCES (comma-separated,
bound before connecting; without SOURCES, PER connections from wherever the kernel picks) and
sends nothing on them; prints how many it opened, then holds them until stdin closes.

Usage: idle_connections.py HOST PORT PER [SOURCES]"""
import resource
import socket
import sys

host, port, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sources = sys.argv[4].split(",") if len(sys.argv) > 4 else [None]
resource.setrlimit(resource.RLIMIT_NOFILE, (len(sources) * per + 100,) * 2)
family = socket.AF_INET6 if ":" in host else socket.AF_INET
conns = []
for src in sources:
    for _ in range(per):
        s = socket.socket(family)
        s.settimeout(5)
        if src is not None:
            s.bind((src, 0))
        s.connect((host, port))
        conns.append(s)
print(len(conns), flush=True)
sys.stdin.read()
for s in conns:
    s.close()
