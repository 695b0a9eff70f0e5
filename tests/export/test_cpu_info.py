"""export/cpu_info.py: the CPU's name and flags from /proc/cpuinfo-shaped text."""

from __future__ import annotations

from pathlib import Path

from export.cpu_info import cpu_flags, cpu_name, native_bf16

ZEN4 = ("processor\t: 0\nmodel name\t: AMD EPYC 9R14\n"
        "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu\n")  # fmt: skip
SPR = ("model name\t: Intel(R) Xeon(R) Platinum 8480+\n"
       "flags\t\t: avx512f avx512_bf16 amx_bf16 amx_tile\n")
SKYLAKE = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: avx2 avx512f avx512_vnni\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


def test_cpu_name_from_cpuinfo(tmp_path: Path) -> None:
    assert cpu_name(write(tmp_path, SPR)) == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu_name(tmp_path / "missing")  # lscpu or platform: never empty


def test_flags_of_the_first_processor(tmp_path: Path) -> None:
    assert cpu_flags(write(tmp_path, ZEN4)) == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16",
                                                 "avx512_vnni"}  # fmt: skip
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_native_bf16_names_the_flag_amx_first(tmp_path: Path) -> None:
    assert native_bf16(write(tmp_path, ZEN4)) == "avx512_bf16"
    assert native_bf16(write(tmp_path, SPR)) == "amx_bf16"
    assert native_bf16(write(tmp_path, SKYLAKE)) is None
    assert native_bf16(tmp_path / "missing") is None
