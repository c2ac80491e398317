"""Run a command and report its peak RSS as `ru_maxrss`, from a process small enough to count.

    python -m benchmarks.launcher CMD [ARGS...]

Linux carries a process's RSS high-water mark across fork and exec: a child started
directly by a benchmark process that already holds a model and several Milvus Lite
databases reports *that* process's size as its own peak. Started from this launcher (a
fresh interpreter with nothing loaded), the child's `ru_maxrss` is its own. The command's
output passes through; a last stdout line `{"launcher": {"returncode", "maxrss_kib",
"seconds", "cpu_seconds"}}` follows it: wall time from start to exit, and user + sys CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> int:
    cmd = sys.argv[1:]
    if not cmd:
        print("usage: python -m benchmarks.launcher CMD [ARGS...]", file=sys.stderr)
        return 2
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    sys.stdout.flush()
    report = {
        "returncode": code,
        "maxrss_kib": usage.ru_maxrss,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),  # the child's user + sys
    }
    print(json.dumps({"launcher": report}))
    return code


if __name__ == "__main__":
    sys.exit(main())
