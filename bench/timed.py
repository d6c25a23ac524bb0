#!/usr/bin/env python3
"""Runs a command and writes what it cost to a JSON file: wall seconds, CPU seconds (user +
system, all its processes), peak resident memory of its largest process, and, where NVML
answers (the `nvidia-ml-py` package and an NVIDIA driver), the peak GPU memory in use while it
ran above what was in use before it started (sampled every 200 ms in this process, so that the
sampling adds nothing to the command's CPU time). Its output passes through; its exit status
is ours.

GNU time would give the first three, but it is not on every machine; this needs only Python.

    python3 bench/timed.py OUT/cost-open_clip.json -- python3 -m open_clip_train.main ...
"""

import json
import resource
import subprocess
import sys
import threading
import time


def gpu_memory_reader():
    """A function returning the first GPU's memory in use in MiB, or None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # no package, no driver or no GPU: the report says null
        return None
    return lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20


class GpuPeak:
    """Samples the GPU memory in a thread until stopped; keeps the largest reading."""

    def __init__(self):
        self.read = gpu_memory_reader()
        self.baseline = None if self.read is None else self.read()
        self.peak = self.baseline
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        if self.baseline is not None:
            self.thread.start()

    def sample(self):
        while not self.done.wait(0.2):
            self.peak = max(self.peak, self.read())

    def stop(self):
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
        return None if self.baseline is None else self.peak - self.baseline


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        raise SystemExit("usage: timed.py REPORT.json -- COMMAND [ARGS...]")
    report, command = sys.argv[1], sys.argv[3:]
    gpu = GpuPeak()
    start = time.monotonic()
    status = subprocess.run(command).returncode
    wall = time.monotonic() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cost = {
        "command": command,
        "status": status,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "peak_gpu_mib": gpu.stop(),
    }
    with open(report, "w") as f:
        json.dump(cost, f, indent=1)
    sys.exit(status)


if __name__ == "__main__":
    main()
