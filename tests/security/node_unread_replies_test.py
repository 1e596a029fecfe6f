#!/usr/bin/env python3
"""Clients that pile up answers: calls never finished, and answers never read, against `omni node`
on loopback. Usage: OMNI SHARED_DIR

Each Gate.hello call is answered with a NodeInfo of ~1 KiB and a new capability, which the RPC
system keeps until the caller sends Finish.
1. Calls never finished: a client sends hello calls without Finish. The 257th ends the connection
   ("more than 256 calls are open"); peak memory stays small.
2. Answers never read: a client sends up to 200,000 hello calls, each finished, and reads nothing.
   The node stops reading that connection once 1 MiB of answers waits unsent (the client's sends
   then block), keeps its peak memory small (every call read and answered would hold its answer
   in memory), serves a legitimate client meanwhile, and closes the connection after
   --connection-idle-timeout (4 s) of unread answers.
"""
import os
import socket
import ssl
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_net_lib import (Node, Workdir, client_identity, fail, finish, greet, hello, ok,  # noqa: E402
                          read_until_closed, run_client, tls_connect)

OMNI, SHARED = sys.argv[1], sys.argv[2]
CALLS, BATCH = 200000, 1000


def with_id(template, at, question):
    m = bytearray(template)
    m[at:at + 4] = question.to_bytes(4, "little")
    return m


def flood(sock, sent, finished):
    """Sends hello calls (each followed by its Finish when `finished`) until CALLS or until the
    node stops reading; counts them in sent[0]."""
    call_template, finish_template = hello(0x5a5a5a5a, 0), finish(0x5a5a5a5a)
    call_at, finish_at = call_template.index(b"\x5a" * 4), finish_template.index(b"\x5a" * 4)
    sock.settimeout(3.0)
    question = 2
    try:
        while sent[0] < CALLS:
            batch = bytearray()
            for _ in range(BATCH):
                batch += with_id(call_template, call_at, question)
                if finished:
                    batch += with_id(finish_template, finish_at, question)
                question += 1
            sock.sendall(batch)
            sent[0] += BATCH
    except (socket.timeout, ssl.SSLError, OSError):
        pass  # the node stopped reading (or closed)


with Workdir() as work:
    identity = client_identity(work)
    with Node(OMNI, SHARED, work, "--connection-idle-timeout", "4") as node:
        run_client(OMNI, SHARED, work, node.addr, 10.0, "warm-up")
        base = node.vmhwm_mb()

        # --- 1: calls never finished ---------------------------------------------------------------
        s = tls_connect(node.port, identity)
        greet(s)
        sent = [0]
        flood(s, sent, finished=False)
        _, closed = read_until_closed(s, 5.0, limit=1 << 30)
        s.close()
        if not closed:
            fail("a peer with %d unfinished calls was not cut off" % sent[0])
        if not node.wait_log("more than 256 calls are open on this connection"):
            fail("no clear reason logged: " + node.log_text()[-600:])
        grew = node.vmhwm_mb() - base
        if grew > 20:
            fail("peak memory grew by %.0f MB with unfinished calls" % grew)
        ok("unfinished calls: the connection ended at the 257th, peak +%.0f MB" % grew)

        # --- 2: answers never read ------------------------------------------------------------------
        s = tls_connect(node.port, identity)
        greet(s)
        sent = [0]
        t = threading.Thread(target=flood, args=(s, sent, True))
        t.start()
        t.join(40)
        if sent[0] >= CALLS:
            fail("all %d calls were read although no answer was: the node keeps reading a peer that does not read"
                 % CALLS)
        grew = node.vmhwm_mb() - base
        if grew > 40:
            fail("peak memory grew by %.0f MB with unread answers (baseline %.0f MB)" % (grew, base))
        took = run_client(OMNI, SHARED, work, node.addr, 10.0, "while a peer does not read its answers")
        ok("unread answers: the node stopped reading after about %d calls (peak +%.0f MB); a client was served "
           "in %.2f s" % (sent[0], grew, took))
        if not node.wait_log("has not read its replies for 4 s", 10.0):
            fail("the stuck connection was not closed: " + node.log_text()[-600:])
        s.close()
        if not node.alive():
            fail("the node died")
        ok("the connection was closed after 4 s of unread answers")
print("PASS")
