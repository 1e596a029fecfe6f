#!/usr/bin/env python3
"""Hostile clients of `omni relay` (issue 15 item 17; docs/security.md "Relay"), with one relayed
node and the relay's default limits (16 relayed connections per address, 8 of them waiting for a
dial-back, 32 per node, 16 unfinished first lines per address, 10 s for a relayed client's first
byte, 2 s linger after one side closes):
  - 32 silent CONNECTs from one address (before: all 32 got OK and cut the node off for the 300 s
    idle timeout): at most 16 get OK, the rest a clear ERR naming the per-address limit; a client
    from another address is served meanwhile; the silent ones are closed at the first-byte timeout;
  - 32 silent CONNECTs from four addresses (8 each) fill the node: they are closed at the
    first-byte timeout and a client is served again within it plus a margin;
  - a client whose node side closes (garbage instead of a TLS hello) but which never closes its own
    socket (before: the relay held both sides until the idle timeout): the relay closes it within
    the linger;
  - 200 connections from one address that never send their first line: beyond 16 closed at once,
    a client from another address is served.
The relay's peak memory stays bounded. Usage: relay_flood_test.py OMNI SHARED_DIR"""

import os
import re
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from process_lib import Omni, fail, model_path, ok, run  # noqa: E402

FIRST_BYTE_S = 10
LINGER_S = 2


def open_from(source, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_line(s):
    line = b""
    while not line.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            break
        line += b
    return line.decode(errors="replace").strip()


def silent_connects(port, peer_id, sources, per_source):
    """CONNECTs, one after the other, each left silent once answered; returns [(socket, reply)]."""
    out = []
    for source in sources:
        for _ in range(per_source):
            s = open_from(source, port)
            s.sendall(("OMNI-RELAY/1 CONNECT %s\n" % peer_id).encode())
            try:
                out.append((s, read_line(s)))
            except ConnectionResetError:
                out.append((s, "reset"))
    return out


def closed_within(s, seconds):
    """Seconds until the relay closes `s` (EOF or reset), or None if it stays open that long."""
    started = time.monotonic()
    s.settimeout(seconds)
    try:
        while True:
            if not s.recv(4096):
                return time.monotonic() - started
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - started
    except socket.timeout:
        return None


def served(omni, model, address, work, bound_s):
    rc, out, err, took = run(omni, "run", "-m", model, "-p", "hello", "-n", "2", "-t", "1", "--peers", address,
                             "--data-dir", os.path.join(work, "client"), "--timeout", "10", timeout=bound_s + 10)
    return rc == 0 and took <= bound_s, took, err


def main():
    omni, shared = sys.argv[1], sys.argv[2]
    model = model_path(shared)
    work = tempfile.mkdtemp(prefix="omni-relay-flood.")
    with Omni(omni, "relay", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "relay"),
              "--keepalive", "2") as relay:
        port = int(relay.wait_for(r"^omni relay: peer \S+ listening on 127\.0\.0\.1:(\d+)$").group(1))
        with Omni(omni, "node", "-m", model, "--blocks", "0:4", "--relay", "127.0.0.1:%d" % port, "--data-dir",
                  os.path.join(work, "node"), "-t", "1") as node:
            address = node.wait_for(r"^omni node: peer \S+ reachable as (\S+),").group(1)
            peer_id = address.split("@")[0]
            good, took, err = served(omni, model, address, work, 10)
            if not good:
                fail("a client through the relay was not served before any attack (%.1f s): %s" % (took, err))

            # 1. 32 silent CONNECTs from 127.0.0.2.
            started = time.monotonic()
            held = silent_connects(port, peer_id, ["127.0.0.2"], 32)
            oks = [s for s, reply in held if reply == "OK"]
            errs = [reply for s, reply in held if reply != "OK"]
            if len(oks) > 16:
                fail("%d of 32 silent CONNECTs from one address got OK (limit 16)" % len(oks))
            bad = [e for e in errs if "limit per address" not in e]
            if bad:
                fail("a refused CONNECT did not name the per-address limit: %r" % bad[0])
            good, took, err = served(omni, model, address, work, 8)
            if not good:
                fail("with 32 silent CONNECTs from 127.0.0.2 a client from 127.0.0.1 was not served in 8 s "
                     "(%.1f s): %s" % (took, err))
            ok("32 silent CONNECTs from 127.0.0.2: %d OK, %d refused (%s); a client from 127.0.0.1 was served "
               "in %.2f s" % (len(oks), len(errs), errs[0] if errs else "-", took))
            deadline = started + FIRST_BYTE_S + 4
            for s in oks:
                if closed_within(s, max(deadline - time.monotonic(), 0.1)) is None:
                    fail("a silent relayed client was still open %d s after its OK" % (FIRST_BYTE_S + 4))
            elapsed = time.monotonic() - started
            ok("the %d silent relayed clients were closed %.1f s after they connected (first-byte timeout %d s)" %
               (len(oks), elapsed, FIRST_BYTE_S))
            for s, _ in held:
                s.close()
            if "no first byte within 10.0 s" not in relay.text():
                fail("the relay did not log why it closed the silent clients: " + relay.text()[-2000:])

            # 2. 32 silent CONNECTs from four addresses fill the node; they go at the deadline.
            started = time.monotonic()
            held = silent_connects(port, peer_id, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"], 8)
            oks = [s for s, reply in held if reply == "OK"]
            while True:
                good, took, err = served(omni, model, address, work, 10)
                if good:
                    break
                if time.monotonic() - started > FIRST_BYTE_S + 6:
                    fail("with the node filled by silent clients, no client was served within %d s: %s" %
                         (FIRST_BYTE_S + 6, err))
                time.sleep(0.5)
            ok("32 silent CONNECTs from 4 addresses (%d OK) filled the node; a client was served again %.1f s "
               "after they came" % (len(oks), time.monotonic() - started))
            for s, _ in held:
                s.close()

            # 3. The node's side closes, the client never closes its own.
            before = len(re.findall(r"one side closed, the other did not", relay.text()))
            s = open_from("127.0.0.1", port)
            s.sendall(("OMNI-RELAY/1 CONNECT %s\n" % peer_id).encode())
            if read_line(s) != "OK":
                fail("the half-close client was not relayed")
            s.sendall(b"this is not a TLS client hello\r\n" * 4)
            started = time.monotonic()
            s.settimeout(10)
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
            deadline = time.monotonic() + LINGER_S + 5
            while time.monotonic() < deadline:
                if len(re.findall(r"one side closed, the other did not", relay.text())) > before:
                    break
                time.sleep(0.1)
            else:
                fail("the relay kept a splice whose node side had closed for more than %d s: %s" %
                     (LINGER_S + 5, relay.text()[-2000:]))
            ok("node side closed, client silent and open: the relay closed the splice %.1f s later" %
               (time.monotonic() - started))
            s.close()

            # 4. 200 connections from 127.0.0.3 that never send their first line.
            flood = []
            for _ in range(200):
                try:
                    flood.append(open_from("127.0.0.3", port))
                except OSError as e:
                    fail("connecting the 200 silent connections: %s" % e)
            # The relay closes them as it accepts them; a loaded machine may take a moment.
            open_ones, dropped = list(flood), 0
            deadline = time.monotonic() + 5
            while dropped < 200 - 16 and time.monotonic() < deadline:
                time.sleep(0.1)
                still = []
                for f in open_ones:
                    if closed_within(f, 0.001) is None:
                        still.append(f)
                    else:
                        dropped += 1
                open_ones = still
            if dropped < 200 - 16:
                fail("of 200 silent connections from one address only %d were closed at once (limit 16)" % dropped)
            good, took, err = served(omni, model, address, work, 8)
            if not good:
                fail("with 200 silent connections from 127.0.0.3 a client was not served in 8 s (%.1f s): %s" %
                     (took, err))
            ok("200 connections from 127.0.0.3 without a first line: %d closed at once; a client from 127.0.0.1 "
               "was served in %.2f s" % (dropped, took))
            for f in flood:
                f.close()
            peak = relay.vmhwm_mb()
            if peak > 200:
                fail("the relay peaked at %.0f MB" % peak)
            if not relay.alive() or not node.alive():
                fail("the relay or the node died")
            ok("relay peak memory %.0f MB" % peak)
    print("PASS")


if __name__ == "__main__":
    main()
