"""What the processor is and what it can do, read once: its model name (results files name the
CPU beside every figure) and whether it computes bf16 natively (training's CPU autocast pays
only there). Standard library only.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# Instruction-set flags (as /proc/cpuinfo names them) with native bf16 arithmetic: AVX-512 BF16
# (AMD Zen 4 and later, Intel Cooper Lake / Sapphire Rapids and later) and AMX BF16 tiles
# (Intel Sapphire Rapids and later). oneDNN's bf16 convolutions run on these; without them
# torch emulates bf16 through fp32 and a bf16 autocast step is slower than fp32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_name(cpuinfo: Path = CPUINFO) -> str:
    """The processor's model name (/proc/cpuinfo, else lscpu, else platform): bf16 and INT8
    kernels, hence speed and a configuration's accuracy, depend on it."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name" and value.strip():
                return value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The first processor's instruction-set flags from /proc/cpuinfo (empty where there is
    none: macOS, Windows)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def native_bf16(cpuinfo: Path = CPUINFO) -> str | None:
    """The flag that gives this CPU native bf16 (NATIVE_BF16_FLAGS; AMX first), or None."""
    flags = cpu_flags(cpuinfo)
    for flag in sorted(NATIVE_BF16_FLAGS):
        if flag in flags:
            return flag
    return None
