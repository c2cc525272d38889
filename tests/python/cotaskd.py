"""The real cotaskd for Python tests: started on 127.0.0.1 port 0, its address read from its
log, stopped (SIGTERM, then SIGKILL) at the end. COTASKD names the binary."""

import os
import re
import subprocess
import threading
import time


class Daemon:
    def __init__(self, args=()):
        self.process = subprocess.Popen(
            [os.environ["COTASKD"], "--address=127.0.0.1:0",
             *([] if any(a.startswith("--metrics_address") for a in args)
               else ["--metrics_address=127.0.0.1:0"]), *args],
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.log = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise RuntimeError("cotaskd exited: " + "".join(self.log))
            self.log.append(line)
            found = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
            if found:
                self.address = found.group(1)
                metrics = re.search(r"metrics on http://(127\.0\.0\.1:\d+)/metrics", line)
                self.metrics_address = metrics.group(1) if metrics else None
                # Go on reading its log, so that cotaskd never blocks on a full pipe.
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                return
        raise RuntimeError("cotaskd did not start: " + "".join(self.log))

    def _drain(self):
        for line in self.process.stderr:
            self.log.append(line)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._drainer.join(timeout=10)  # every line of the log has been read

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
