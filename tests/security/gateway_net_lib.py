"""Shared by the gateway's hostile-client tests (python3, stdlib only): starting `omni gateway` on a
free loopback port, raw requests over sockets, one HTTP/1.1 response read off a socket, and the
gateway's peak memory (VmHWM)."""

import json
import os
import socket
import time
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from process_lib import Omni, fail, ok, skip  # noqa: E402,F401


class Gateway(Omni):
    """`omni gateway` on 127.0.0.1:0 with a small test model (`model`, a file in SHARED/models);
    stopped (SIGTERM) on exit, which must stop it within 10 s."""

    def __init__(self, omni, shared, *args, model="synth-llama-q8_0.gguf"):
        model = os.path.join(shared, "models", model)
        if not os.path.exists(model):
            skip(model + " is missing")
        super().__init__(omni, "gateway", "--model", model, "--listen", "127.0.0.1:0", "--threads", "1", *args)
        self.port = int(self.wait_for(r"listening on port (\d+)", timeout=20).group(1))

    def stop(self):
        if not super().stop():
            fail("the gateway did not stop within 10 s of SIGTERM")


def connect(port, source="127.0.0.1", timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


class Reader:
    """Reads HTTP/1.1 responses off a socket, one at a time (Content-Length, chunked, or to close)."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the connection closed")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self):
        status_line = self._line()
        while status_line.startswith(b"HTTP/1.1 100"):  # interim: skip it and its blank line
            self._line()
            status_line = self._line()
        status = int(status_line.split(b" ")[1])
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            name, value = line.split(b":", 1)
            headers[name.decode().lower()] = value.strip().decode()
        if "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._take(size)
                self._take(2)
        else:
            try:
                while True:
                    self._more()
            except (EOFError, OSError):
                pass
            body, self.buf = self.buf, b""
        return Response(status, headers, body)

    def closed(self, timeout=5.0):
        """Whether the server closes the connection (EOF or reset) within `timeout`, with nothing more sent."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def exchange(port, raw, source="127.0.0.1", timeout=10.0):
    """Sends raw bytes on a new connection and reads one response."""
    s = connect(port, source, timeout)
    try:
        s.sendall(raw)
        return Reader(s).response()
    finally:
        s.close()


def get(port, path, source="127.0.0.1", timeout=10.0):
    return exchange(port, ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path).encode(),
                    source, timeout)


def model_id(port):
    return get(port, "/v1/models").json()["data"][0]["id"]


def completion_request(model, max_tokens=2, connection="close"):
    body = json.dumps({"model": model, "prompt": "hello", "max_tokens": max_tokens}).encode()
    return (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Connection: " + connection.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
            b"\r\n\r\n" + body)


def timed(fn, *args, **kwargs):
    started = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - started


def can_bind(address):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((address, 0))
        s.close()
        return True
    except OSError:
        return False


def post_json(port, path, body, headers=None, source="127.0.0.1", timeout=30.0):
    """POSTs `body` (a dict, or bytes sent as they are) with extra `headers` (a dict); one response."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    extra = "".join("%s: %s\r\n" % (k, v) for k, v in (headers or {}).items())
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n%s"
            "Content-Length: %d\r\n\r\n" % (path, extra, len(data)))
    return exchange(port, head.encode() + data, source, timeout)
