#!/usr/bin/env python3
"""A model host for tests/model_url_test.sh: serves one GGUF file over HTTP on a free loopback port
and misbehaves on purpose, chosen by the path's first segment:

  /m/NAME         the file: ETag, X-Linked-Etag (its SHA-256, as Hugging Face sends), Range + If-Range
  /cut/NAME       the same, but the first request's body breaks off (connection closed) after CUT bytes
  /stall/NAME     the same, but the first request's body stops after CUT bytes and the connection hangs
  /badhash/NAME   the file with an X-Linked-Etag that is another file's SHA-256
  /hop/N/NAME     302 to /hop/N-1/NAME (relative), and /hop/0/NAME to the absolute URL of /m/NAME
  /ORG/REPO/resolve/REV/NAME  as Hugging Face: 302 to /m/NAME with X-Linked-Etag (HF_ENDPOINT)

Usage: model_url_server.py FILE CUT LOG. Prints "port N" once it listens; appends one JSON line per
request to LOG: path, range, if_range, status, sent (body bytes written)."""
import hashlib
import http.server
import json
import os
import socketserver
import sys
import threading
import time

path, cut, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = open(path, 'rb').read()
sha = hashlib.sha256(data).hexdigest()
wrong = hashlib.sha256(data + b'x').hexdigest()
etag = '"%s"' % hashlib.md5(data).hexdigest()
cut_once = set()
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def record(self, status, sent):
        with lock, open(log_path, 'a') as f:
            f.write(json.dumps({'path': self.path, 'range': self.headers.get('Range'),
                                'if_range': self.headers.get('If-Range'), 'status': status, 'sent': sent}) + '\n')

    def do_GET(self):
        parts = self.path.split('/')
        mode = parts[1] if len(parts) > 2 else ''
        if len(parts) == 6 and parts[3] == 'resolve':  # a hub's resolve URL: 302 to its CDN, with the hash
            self.send_response(302)
            self.send_header('Location', 'http://127.0.0.1:%d/m/%s' % (self.server.server_address[1], parts[5]))
            self.send_header('X-Linked-Etag', '"%s"' % sha)
            self.send_header('Content-Length', '0')
            self.end_headers()
            self.record(302, 0)
            return
        if mode == 'hop':
            n = int(parts[2])
            if n > 0:
                target = '../%d/%s' % (n - 1, parts[3])
            else:
                target = 'http://127.0.0.1:%d/m/%s' % (self.server.server_address[1], parts[3])
            self.send_response(302)
            self.send_header('Location', target)
            self.send_header('X-Linked-Etag', '"%s"' % sha)
            self.send_header('Content-Length', '0')
            self.end_headers()
            self.record(302, 0)
            return
        if mode not in ('m', 'cut', 'stall', 'badhash'):
            self.send_error(404)
            self.record(404, 0)
            return
        first = 0
        rng = self.headers.get('Range')
        if rng and rng.startswith('bytes=') and self.headers.get('If-Range', etag) == etag:
            first = int(rng[6:].split('-')[0])
        status = 206 if first else 200
        self.send_response(status)
        self.send_header('ETag', etag)
        self.send_header('X-Linked-Etag', '"%s"' % (wrong if mode == 'badhash' else sha))
        self.send_header('Content-Length', str(len(data) - first))
        if first:
            self.send_header('Content-Range', 'bytes %d-%d/%d' % (first, len(data) - 1, len(data)))
        self.end_headers()
        body = data[first:]
        limit = len(body)
        stall = False
        with lock:
            if mode in ('cut', 'stall') and self.path not in cut_once:
                cut_once.add(self.path)
                limit = min(limit, cut)
                stall = mode == 'stall'
        sent = 0
        try:
            while sent < limit:
                n = self.wfile.write(body[sent:min(limit, sent + 65536)])
                sent += n
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.record(status, sent)
        if stall:
            time.sleep(3600)
        if limit < len(body):
            self.close_connection = True
            self.connection.shutdown(2)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(('127.0.0.1', 0), Handler)
print('port %d' % server.server_address[1], flush=True)
server.serve_forever()
