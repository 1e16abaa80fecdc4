"""What the CPU's instruction set means for INT8 accuracy and speed.

x86 CPUs without VNNI (AVX2 or AVX-512 only) multiply u8 x s8 pairs with
``vpmaddubsw``, which sums two products into a *saturating* int16. ONNX Runtime's
U8S8 kernels use it, so a QDQ INT8 model can lose accuracy on such a CPU that it
does not lose on a VNNI CPU: measured on the shipped model on an AVX2 EPYC, a 4.5
point val drop (U8S8), 3.3 with 7-bit weights (reduce_range), 0.7 with U8U8, which
is 8x slower there. OpenVINO's CPU plugin does not have this problem. The same
artifact can pass ``wastenet verify`` on one machine and fail on another: verify on
the CPU that will run it.
"""

from __future__ import annotations

import platform

from wastenet.provenance import cpu_flags

VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def int8_saturation_risk(flags: set[str] | None = None, machine: str | None = None) -> bool:
    """True on an x86 CPU known to have AVX2 but no VNNI (u8 x s8 dot products saturate)."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i686", "x86"):
        return False
    flags = cpu_flags() if flags is None else flags
    if not flags:
        return False
    return "avx2" in flags and not (flags & VNNI_FLAGS)


SATURATION_WARNING = (
    "this CPU has AVX2 but no VNNI: ONNX Runtime's INT8 (U8S8) kernels saturate here "
    "and can lose accuracy that a VNNI CPU keeps; run `wastenet verify` on this machine, "
    "or use the openvino-int8 format"
)
