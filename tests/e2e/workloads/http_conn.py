"""An HTTP/1.1 client connection read by hand (framing edge cases that http.client hides),
imported by the HTTP workload programs beside it."""
import socket


class Conn:
    def __init__(self, host, port, timeout=30):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def fill(self):
        b = self.s.recv(1 << 16)
        if not b:
            raise EOFError(f"connection closed; unparsed: {self.buf[:200]!r}")
        self.buf += b

    def until(self, sep):
        while sep not in self.buf:
            self.fill()
        out, _, self.buf = self.buf.partition(sep)
        return out

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self):
        lines = self.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        return lines[0], status, headers

    def take(self, n, put):
        """Passes the next `n` bytes of the stream to `put`."""
        while n:
            if not self.buf:
                self.fill()
            part = self.buf[:n]
            self.buf = self.buf[len(part):]
            n -= len(part)
            put(part)

    def response(self, sink=None):
        """(status line, status, headers, body); `sink(chunk)` instead of keeping the body."""
        line, status, headers = self.head()
        body = bytearray()
        put = sink or body.extend
        if status < 200 or status in (204, 304):
            pass
        elif "chunked" in ",".join(headers.get("transfer-encoding", [])).lower():
            while True:
                size = int(self.until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self.until(b"\r\n")  # no trailers expected
                    break
                self.take(size, put)
                self.exact(2)
        elif "content-length" in headers:
            self.take(int(headers["content-length"][0]), put)
        else:
            put(self.read_to_eof())
            self.buf = b""
        return line, status, headers, bytes(body)

    def read_to_eof(self):
        while True:
            try:
                self.fill()
            except EOFError:
                return self.buf
