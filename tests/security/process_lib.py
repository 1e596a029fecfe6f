"""Shared by the relay, DHT, store and identity hostile-client tests (python3, stdlib only): `omni`
processes started and stopped, their listening lines, peak memory (VmHWM) and the sockets they hold."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time


def fail(message):
    print("FAIL: " + message)
    sys.stdout.flush()
    sys.exit(1)


def ok(message):
    print("ok   " + message)
    sys.stdout.flush()


def skip(message):
    print("SKIP: " + message)
    sys.exit(77)


def model_path(shared):
    path = os.path.join(shared, "models", "synth-llama-q8_0.gguf")
    if not os.path.exists(path):
        skip(path + " is missing")
    return path


class Omni:
    """One `omni` process with stdout and stderr in one log file; SIGTERM (then SIGKILL) on stop.
    The log is a temporary file removed on stop, or `log_path` (kept). `preexec_fn` runs in the child
    before exec (resource limits)."""

    def __init__(self, omni, *args, stdin=subprocess.DEVNULL, log_path=None, preexec_fn=None):
        self.args = [omni, *args]
        self._own_log = log_path is None
        if log_path is None:
            with tempfile.NamedTemporaryFile(prefix="omni-security.", suffix=".log", delete=False) as f:
                log_path = f.name
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(self.args, stdin=stdin, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=preexec_fn)

    @property
    def pid(self):
        return self.proc.pid

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    log_text = text

    def wait_for(self, pattern, timeout=30.0):
        """The first match of `pattern` in the log (re.MULTILINE), waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text(), re.MULTILINE)
            if m:
                return m
            if self.proc.poll() is not None:
                self.stop()
                fail("%s exited (%d) before printing /%s/: %s" % (self.args[1], self.proc.returncode, pattern,
                                                                  self.text()))
            time.sleep(0.05)
        text = self.text()
        self.stop()
        fail("%s did not print /%s/ in %.0f s: %s" % (self.args[1], pattern, timeout, text))

    def alive(self):
        return self.proc.poll() is None

    def proc_status(self, key):
        """A number from /proc/PID/status (kB for sizes), 0 when absent."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def vmhwm_mb(self):
        return self.proc_status("VmHWM") / 1024.0

    def threads(self):
        return self.proc_status("Threads")

    def open_fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def stop(self):
        """Stops the process; whether SIGTERM was enough (within 10 s)."""
        graceful = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                graceful = False
                self.proc.kill()
                self.proc.wait()
        if self._own_log and os.path.exists(self.log_path):
            os.unlink(self.log_path)
        return graceful

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _socket_inodes(pid):
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    return inodes


def _address(hex_addr, v6):
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if v6:
        # /proc prints the address as four host-order 32-bit words.
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        return socket.inet_ntop(socket.AF_INET6, raw), int(port, 16)
    return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)


def bound_sockets(pid, proto):
    """(local host, port) of the process's `proto` ("udp" or "tcp") sockets; for tcp only listeners."""
    mine = _socket_inodes(pid)
    out = []
    for table, v6 in ((proto, False), (proto + "6", True)):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[9] not in mine:
                        continue
                    if proto == "tcp" and fields[3] != "0A":  # LISTEN
                        continue
                    out.append(_address(fields[1], v6))
        except FileNotFoundError:
            continue
    return out


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def run(omni, *args, timeout=60.0, stdin=subprocess.DEVNULL):
    """Runs `omni ARGS` to the end: (exit code, stdout, stderr, seconds)."""
    started = time.monotonic()
    try:
        p = subprocess.run([omni, *args], stdin=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail("omni %s did not finish within %.0f s" % (" ".join(args), timeout))
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), \
        time.monotonic() - started
