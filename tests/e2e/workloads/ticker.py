"""A long-lived flow: sends MARKER to HOST:PORT every PERIOD seconds for SECONDS, half-closes,
then reads the answer: to its end with READ "all", else one read of at most READ bytes (a
client that stops reading). Prints JSON: how the flow ended ("ok" once an answer came; the
error's name; "closed before the answer"), the bytes sent, the answer's length and its first
200 bytes (latin-1), and when it ended. Exits 1 unless "ok".

Usage: ticker.py HOST PORT SECONDS PERIOD MARKER READ"""
import json
import socket
import sys
import time

host, port, seconds, period, marker, read = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
s = socket.create_connection((host, port), timeout=10)
end, sent, how, answer = time.time() + seconds, 0, "ok", b""
try:
    while time.time() < end:
        s.sendall(marker.encode())
        sent += len(marker)
        time.sleep(period)
    s.shutdown(socket.SHUT_WR)
    if read == "all":
        while b := s.recv(65536):
            answer += b
    else:
        answer = s.recv(int(read))
    if not answer:
        how = "closed before the answer"
except OSError as e:
    how = type(e).__name__
print(json.dumps({"how": how, "sent": sent, "answer_len": len(answer), "answer": answer[:200].decode("latin-1"), "at": time.time()}))
sys.exit(0 if how == "ok" else 1)
