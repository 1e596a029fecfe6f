"""Shared by the node's hostile-client tests (python3, stdlib only, plus the openssl command): starting
`omni node` on a free loopback port, a TLS 1.3 client with its own Ed25519 identity, hand-built
Cap'n Proto RPC messages (framing, Bootstrap, Gate.hello, calls with large capability tables), a
legitimate `omni run --peers` timed against a bound, and the node's peak memory (VmHWM)."""

import os
import re
import resource
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from process_lib import Omni, fail, ok, skip  # noqa: E402,F401

MODEL_NAME = "synth-llama-q8_0.gguf"
GATE_INTERFACE_ID = 0x828ceab8823ced2f  # proto/node.capnp, interface Gate
# The version `omni node` speaks, read from the schema it is built from.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto", "node.capnp")) as _schema:
    PROTOCOL_VERSION = int(re.search(r"const protocolVersion :UInt32 = (\d+);", _schema.read()).group(1))


def model_path(shared):
    model = os.path.join(shared, "models", MODEL_NAME)
    if not os.path.exists(model):
        skip(model + " is missing")
    return model


class Node(Omni):
    """`omni node` serving all blocks of the small test model (or `model`) on 127.0.0.1:0, its log and
    data in WORKDIR/NAME; stopped on exit. `nofile`: a limit on open files for the node (soft and
    hard, as `ulimit -n` sets)."""

    def __init__(self, omni, shared, workdir, *args, nofile=None, blocks="0:4", name="node", model=None):
        self.model = model or model_path(shared)
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)

        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        super().__init__(omni, "node", "-m", self.model, "--blocks", blocks, "--listen", "127.0.0.1:0",
                         "--data-dir", self.dir, "-t", "1", *args,
                         log_path=os.path.join(self.dir, "node.log"), preexec_fn=limit)
        m = self.wait_for(r"omni node: peer ([a-z2-7]+) listening on ([^,]+),", timeout=20)
        self.peer_id, hostport = m.group(1), m.group(2)
        self.addr = self.peer_id + "@" + hostport
        self.port = int(hostport.rsplit(":", 1)[1])

    def wait_log(self, text, timeout=3.0, count=1):
        """Whether `text` appears `count` times in the log within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.log_text().count(text) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


class Workdir:
    """A temporary directory removed on exit."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="omni-node-sec.")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def client_identity(workdir, name="attacker"):
    """A self-signed Ed25519 certificate and key (what every node client presents); returns (cert, key)."""
    if shutil.which("openssl") is None:
        print("SKIP: the openssl command is missing")
        sys.exit(77)
    key, cert = os.path.join(workdir, name + ".key"), os.path.join(workdir, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", key, "-out", cert,
                    "-subj", "/CN=" + name, "-days", "1"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return cert, key


def tcp_connect(port, source="127.0.0.1", timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def tls_connect(port, identity, source="127.0.0.1", timeout=10.0):
    """A TLS 1.3 connection to the node presenting `identity` (cert, key); the node's certificate is
    not checked (the tests attack the node, they do not trust it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(identity[0], identity[1])
    return ctx.wrap_socket(tcp_connect(port, source, timeout), server_hostname="node")


def read_until_closed(sock, timeout, limit=1 << 20):
    """Everything the peer sends until it closes (returns (bytes, True)) or `timeout` passes
    (returns (bytes, False))."""
    sock.settimeout(timeout)
    data, end = b"", time.monotonic() + timeout
    try:
        while len(data) < limit and time.monotonic() < end:
            sock.settimeout(max(0.01, end - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError) as e:
        if isinstance(e, socket.timeout):
            return data, False
        return data, True
    return data, False


# --- Cap'n Proto messages, built by hand (layouts from `capnp compile -ocapnp`) ---------------------

class Builder:
    """One segment of 64-bit words; struct and list pointers as the encoding spec lays them out."""

    def __init__(self):
        self.buf = bytearray()

    def alloc(self, words):
        at = len(self.buf) // 8
        self.buf += bytes(8 * words)
        return at

    def put(self, word, byte_offset, fmt, value):
        struct.pack_into("<" + fmt, self.buf, 8 * word + byte_offset, value)

    def struct_ptr(self, at, target, data_words, ptr_words):
        offset = (target - at - 1) & 0x3fffffff
        self.put(at, 0, "Q", (offset << 2) | (data_words << 32) | (ptr_words << 48))

    def list_ptr(self, at, target, size_code, count):
        offset = (target - at - 1) & 0x3fffffff
        self.put(at, 0, "Q", (offset << 2) | 1 | (size_code << 32) | (count << 35))

    def new_struct(self, ptr_at, data_words, ptr_words):
        at = self.alloc(data_words + ptr_words)
        self.struct_ptr(ptr_at, at, data_words, ptr_words)
        return at

    def struct_list(self, ptr_at, count, data_words, ptr_words, element=None):
        """A composite list; `element` (bytes of data_words + ptr_words words) fills it fast."""
        per = data_words + ptr_words
        tag = self.alloc(1)
        self.list_ptr(ptr_at, tag, 7, count * per)
        self.put(tag, 0, "Q", ((count & 0x3fffffff) << 2) | (data_words << 32) | (ptr_words << 48))
        first = len(self.buf) // 8
        if element is not None:
            self.buf += element * count
        else:
            self.alloc(count * per)
        return first

    def message(self):
        return frame([bytes(self.buf)])


def frame(segments):
    """Cap'n Proto stream framing: the segment table, then the segments."""
    table = struct.pack("<I", len(segments) - 1) + b"".join(struct.pack("<I", len(s) // 8) for s in segments)
    if len(table) % 8:
        table += bytes(4)
    return table + b"".join(segments)


def frame_header(words):
    """The segment table of a one-segment message of `words` words (to send a body later, or never)."""
    return struct.pack("<II", 0, words)


def bootstrap(question_id=0):
    b = Builder()
    root = b.alloc(1)
    msg = b.new_struct(root, 1, 1)
    b.put(msg, 0, "H", 8)  # Message.bootstrap
    boot = b.new_struct(msg + 1, 1, 1)
    b.put(boot, 0, "I", question_id)
    return b.message()


def finish(question_id):
    """Finish: the caller is done with the answer (the node may drop it)."""
    b = Builder()
    root = b.alloc(1)
    msg = b.new_struct(root, 1, 1)
    b.put(msg, 0, "H", 4)  # Message.finish
    f = b.new_struct(msg + 1, 1, 0)
    b.put(f, 0, "I", question_id)
    return b.message()


def call(question_id, target_question, interface_id, method_id, build_content=None, caps=0):
    """A Call on the answer of question `target_question` (e.g. the bootstrap Gate), with a capability
    table of `caps` entries (each a distinct senderHosted capability)."""
    b = Builder()
    root = b.alloc(1)
    msg = b.new_struct(root, 1, 1)
    b.put(msg, 0, "H", 2)  # Message.call
    c = b.new_struct(msg + 1, 3, 3)
    b.put(c, 0, "I", question_id)
    b.put(c, 4, "H", method_id)
    b.put(c + 1, 0, "Q", interface_id)
    target = b.new_struct(c + 3, 1, 1)
    b.put(target, 4, "H", 1)  # MessageTarget.promisedAnswer
    answer = b.new_struct(target + 1, 1, 1)
    b.put(answer, 0, "I", target_question)
    payload = b.new_struct(c + 4, 0, 2)
    if build_content:
        build_content(b, payload)
    if caps:
        # CapDescriptor: tag 1 (senderHosted) in bits 0-15, attachedFd 255 stored as 0, id in bits 32-63.
        first = b.struct_list(payload + 1, caps, 1, 1)
        for i in range(caps):
            struct.pack_into("<HxxI", b.buf, 8 * (first + 2 * i), 1, i)
    return b.message()


def hello(question_id, gate_question, version=PROTOCOL_VERSION):
    def content(b, payload):
        params = b.new_struct(payload, 0, 1)  # Gate.hello params: (hello :Hello)
        h = b.new_struct(params, 1, 1)
        b.put(h, 0, "I", version)
    return call(question_id, gate_question, GATE_INTERFACE_ID, 0, content)


def greet(sock):
    """Bootstrap and Gate.hello on `sock`; returns once the node has answered (some bytes back)."""
    sock.sendall(bootstrap(0) + hello(1, 0))
    sock.settimeout(10)
    if not sock.recv(65536):
        fail("the node closed the connection instead of answering hello")


# --- the legitimate client -------------------------------------------------------------------------

def run_client(omni, shared, workdir, addr, bound_s, what, tokens=8, name="client", extra=()):
    """`omni run --peers addr` generating `tokens` tokens; fails the test unless it succeeds within
    bound_s seconds. Returns the seconds it took."""
    started = time.monotonic()
    try:
        r = subprocess.run([omni, "run", "-m", model_path(shared), "-p", "Once upon a time", "-n", str(tokens),
                            "--temp", "0", "--ignore-eos", "-t", "1", "--peers", addr,
                            "--data-dir", os.path.join(workdir, name), *extra],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=bound_s * 3 + 10)
    except subprocess.TimeoutExpired:
        fail("%s: the legitimate client hung" % what)
    took = time.monotonic() - started
    if r.returncode != 0:
        fail("%s: the legitimate client failed: %s" % (what, r.stderr.decode(errors="replace")[-600:]))
    if took > bound_s:
        fail("%s: the legitimate client took %.2f s (bound %.1f s)" % (what, took, bound_s))
    return took
