#!/usr/bin/env python3
"""Identity keys a node must not use (issue 15 item 21; docs/security.md "Identity"). Each is
refused at start with a message naming the file and the fix, in bounded time, while a node with
its own key keeps serving:
  - identity.pem a symbolic link to another node's key (two nodes, one peer id: each data
    directory has its own lock, so only the link check can see it);
  - a data directory every user may write to (mode 0777);
  - a key file readable by others (mode 0644);
  - a passphrase-protected key, with a terminal attached: before, OpenSSL prompted on it and the
    node hung at start; now no prompt, a refusal.
Usage: identity_refusals_test.py OMNI SHARED_DIR"""

import fcntl
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from process_lib import Omni, fail, model_path, ok, run  # noqa: E402


def node_args(model, data_dir):
    return ["node", "-m", model, "--blocks", "0:4", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "-t", "1"]


def refused(omni, model, data_dir, expect, what):
    rc, out, err, took = run(omni, *node_args(model, data_dir), timeout=30)
    if rc == 0 or "listening on" in out:
        fail("%s: the node started (rc %d): %s%s" % (what, rc, out, err))
    for text in expect:
        if text not in err:
            fail("%s: the error does not say %r: %s" % (what, text, err))
    if took > 10:
        fail("%s: the refusal took %.1f s" % (what, took))
    ok("%s: refused in %.2f s: %s" % (what, took, err.strip().splitlines()[-1]))


def still_serving(omni, model, work, node):
    if not node.alive():
        fail("the node with its own key died: " + node.text())
    addr = node.wait_for(r"^omni node: peer (\S+) listening on ([^,]+),").groups()
    rc, out, err, took = run(omni, "run", "-m", model, "-p", "hello", "-n", "2", "-t", "1", "--peers",
                             "%s@%s" % addr, "--data-dir", os.path.join(work, "client"), timeout=30)
    if rc != 0 or took > 20:
        fail("a client of the node with its own key was not served in time (rc %d, %.1f s): %s" % (rc, took, err))
    return took


def passphrase_refused(omni, model, data_dir):
    """The node under a pseudo-terminal that is its controlling terminal, as at an interactive shell."""
    master, slave = pty.openpty()

    def make_controlling():
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    started = time.monotonic()
    proc = subprocess.Popen([omni, *node_args(model, data_dir)], stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, preexec_fn=make_controlling)
    os.close(slave)
    seen = b""
    while time.monotonic() - started < 15:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                chunk = b""
            seen += chunk
            if not chunk and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    took = time.monotonic() - started
    os.close(master)
    text = seen.decode(errors="replace")
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        fail("passphrase-protected key: the node was still running after %.0f s (a prompt?): %r" % (took, text))
    if "pass phrase" in text.lower():
        fail("passphrase-protected key: the node prompted for the passphrase: %r" % text)
    if proc.returncode == 0 or "is protected by a passphrase" not in text or "openssl pkey" not in text:
        fail("passphrase-protected key: rc %d, unclear error: %r" % (proc.returncode, text))
    ok("passphrase-protected key, terminal attached: refused in %.2f s without a prompt: %s" %
       (took, text.strip().splitlines()[-1]))


def main():
    omni, shared = sys.argv[1], sys.argv[2]
    model = model_path(shared)
    if not shutil.which("openssl"):
        print("SKIP: the openssl command is needed to make a passphrase-protected key")
        sys.exit(77)
    work = tempfile.mkdtemp(prefix="omni-identity.")
    try:
        own = os.path.join(work, "own")
        with Omni(omni, *node_args(model, own)) as node:
            node.wait_for(r"^omni node: peer \S+ listening on ")
            key = os.path.join(own, "identity.pem")

            shared_dir = os.path.join(work, "linked")
            os.mkdir(shared_dir, 0o700)
            os.symlink(key, os.path.join(shared_dir, "identity.pem"))
            refused(omni, model, shared_dir, [shared_dir + "/identity.pem is a symbolic link to " + key,
                                              "give each node its own key"], "symbolic link to another node's key")

            open_dir = os.path.join(work, "open")
            os.mkdir(open_dir)
            os.chmod(open_dir, 0o777)
            refused(omni, model, open_dir, ["the data directory " + open_dir + " has permissions 0777",
                                            "chmod 700 " + open_dir], "world-writable data directory")
            if os.path.exists(os.path.join(open_dir, "identity.pem")):
                fail("a key was written into the world-writable directory")

            readable = os.path.join(work, "readable")
            shutil.copytree(own, readable, ignore=shutil.ignore_patterns("identity.lock"))
            os.chmod(os.path.join(readable, "identity.pem"), 0o644)
            refused(omni, model, readable, [readable + "/identity.pem has permissions 0644",
                                            "chmod 600 " + readable + "/identity.pem"], "key readable by others")

            locked = os.path.join(work, "locked")
            os.mkdir(locked, 0o700)
            locked_key = os.path.join(locked, "identity.pem")
            subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:secret",
                            "-out", locked_key], check=True, capture_output=True)
            os.chmod(locked_key, 0o600)
            passphrase_refused(omni, model, locked)

            took = still_serving(omni, model, work, node)
            ok("the node with its own key kept serving: a run took %.2f s; peak memory %.0f MB" %
               (took, node.vmhwm_mb()))
            if node.vmhwm_mb() > 1024:
                fail("the node peaked at %.0f MB" % node.vmhwm_mb())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
