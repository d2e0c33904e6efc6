"""Resident memory of this process (Linux /proc): current RSS, a resettable peak, the lifetime peak.

A benchmark worker loads its model, touches every weight, records the RSS, resets the peak
counter, trains, then reads the peak: the increment is what training itself allocated.
"""

from __future__ import annotations

import os

import torch


def touch_weights(model) -> None:
    """Read every parameter once. transformers maps safetensors weights from the file, so they only
    count in RSS once touched; touching them here makes "RSS after loading" include the weights."""
    with torch.no_grad():
        for param in model.parameters():
            param.sum()


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """VmHWM (peak RSS since the last reset), else ru_maxrss (peak over the process lifetime)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return ru_maxrss_mib()


def ru_maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
