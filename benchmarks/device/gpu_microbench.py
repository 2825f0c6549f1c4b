"""Measure what the catalog otherwise takes from datasheets, on the GPU this runs on.

Writes one JSON file with:
- gemm: achieved TFLOP/s of C = A·B for LLM layer shapes (K, N) over token counts M, in BF16 and
  FP8 (torch._scaled_mm, per-tensor scales), each timed by replaying a CUDA graph of repeated
  products (launch overhead excluded, as in a serving engine that uses graphs);
- gemm_tp: the same for one GPU's slice of those layers under tensor parallelism 2, 4 and 8 (the
  column-parallel projections split N, the row-parallel ones K), Llama-3.1-8B/70B and Qwen3-32B;
- hbm: achieved bandwidth of a large read (sum) and a copy (read + write);
- attention: causal flash-attention forward and forward+backward TFLOP/s at training shapes, decode
  attention (one query token per sequence against a KV cache) as bytes of KV read per second, and a
  prompt chunk's attention after a prefix of its prompt (three ways, with the kernel PyTorch chose);
- grouped_gemm: MoE expert GEMMs (Qwen3-235B, gpt-oss-120b and DeepSeek-V3 shapes) as one grouped
  GEMM per projection, over tokens per expert;
- grouped_gemm_touched: the same with only some experts given tokens (1, 4 or 16 each), as in decode;
- decode: a whole decode step of a Llama-3.1-8B-shaped model with random weights (BF16; the same
  matrices, RMSNorms, rotary-free attention over a preallocated KV cache), captured as a CUDA graph,
  over batch sizes and context lengths; the same step's matrix products alone; the step with FP8 weights
  (W8A8, per-tensor scales, activations quantized on the fly; batch padded to 16); the prefill of
  one prompt at several lengths, in BF16 and with FP8 matrix products; and chunked-prefill steps (a
  prompt chunk, first or after a prefix of its prompt, in one pass with a batch of decoding sequences);
- decode_tp: decode steps of one GPU's slice of Llama-3.1-8B and -70B under tensor parallelism 2, 4 and
  8 (no all-reduce), and their matrix products alone;
- decode_moe: whole decode steps of a Qwen3-30B-A3B-shaped MoE model (random router, grouped GEMMs).

Run: python3 benchmarks/device/gpu_microbench.py --out results.json --accelerator h200-sxm
(about a minute on an H200; PyTorch 2.8 or newer for the grouped GEMMs). Then
`factoryplan validate kernels --data results.json` checks the inference physics against every timed
kernel and prints the constants the file gives (runs on one H200 ship in src/factoryplan/validation/data/;
their means are the catalog's kernels-h200-sxm entry).
Dry run on a CPU with tiny shapes (checks the script, numbers meaningless): --device cpu --small
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

LLM_SHAPES = {  # (K, N): input features, output features
    "l8b_qkv": (4096, 6144),
    "l8b_o": (4096, 4096),
    "l8b_gate_up": (4096, 28672),
    "l8b_down": (14336, 4096),
    "l70b_qkv": (8192, 10240),
    "l70b_gate_up": (8192, 57344),
    "l70b_down": (28672, 8192),
    "square_8k": (8192, 8192),
}
FORCE_FP8 = False  # run the FP8 decode step where the check above says no (a CPU dry run of that path)
TOKENS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
# One GPU's slice of each projection under tensor parallelism (Megatron layout): the column-parallel
# ones (QKV, gate/up) split N, the row-parallel ones (O, down) split K; Llama-3.1-8B/70B and Qwen3-32B
TP_SHAPES = {  # (K, N, which dimension TP splits)
    "l8b_qkv": (4096, 6144, "n"), "l8b_o": (4096, 4096, "k"), "l8b_gate_up": (4096, 28672, "n"),
    "l8b_down": (14336, 4096, "k"), "l70b_qkv": (8192, 10240, "n"), "l70b_o": (8192, 8192, "k"),
    "l70b_gate_up": (8192, 57344, "n"), "l70b_down": (28672, 8192, "k"), "q32b_qkv": (5120, 10240, "n"),
    "q32b_o": (8192, 5120, "k"), "q32b_gate_up": (5120, 51200, "n"), "q32b_down": (25600, 5120, "k"),
}
TP_TOKENS = (1, 16, 64, 128, 256, 512, 2048, 8192)


def timed(fn: Callable[[], Any], dev: str, reps: int) -> float:
    """Seconds per call of ``fn``: CUDA graph replay on a GPU, a plain loop on a CPU."""
    if dev == "cpu":
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    g.replay()
    torch.cuda.synchronize()
    best = math.inf
    for _ in range(3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        g.replay()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3 / reps)
    del g
    return best


def fp8_supported(dev: str) -> bool:
    """FP8 tensor cores and torch._scaled_mm: Ada, Hopper or newer."""
    return dev == "cuda" and hasattr(torch, "_scaled_mm") and torch.cuda.get_device_capability() >= (8, 9)


def reps_for(flops: float) -> int:
    """Enough repetitions that one graph replay lasts a few milliseconds."""
    return int(min(200, max(5, 3e12 / max(flops, 1.0))))


def tp_shapes(small: bool) -> dict[str, tuple[int, int]]:
    """TP_SHAPES sliced for 2, 4 and 8 GPUs, named ``<shape>/tp<n>``; a sixty-fourth of each for a dry run."""
    out = {}
    for name, (k, n, split) in TP_SHAPES.items():
        k, n = (k // 64, n // 64) if small else (k, n)
        for tp in (2, 4, 8):
            out[f"{name}/tp{tp}"] = (k // tp, n) if split == "k" else (k, n // tp)
    return out


def bench_gemm_tp(dev: str, small: bool) -> list[dict[str, Any]]:
    """The dense GEMMs of one tensor-parallel GPU (:func:`tp_shapes`), as :func:`bench_gemm` times them."""
    return bench_gemm(dev, small, tp_shapes(small), (1, 16, 64) if small else TP_TOKENS)


def bench_gemm(
    dev: str, small: bool, shapes: dict[str, tuple[int, int]] | None = None, tokens: tuple[int, ...] | None = None,
) -> list[dict[str, Any]]:
    out = []
    if shapes is None:
        shapes = {k: (v[0] // 64, v[1] // 64) for k, v in LLM_SHAPES.items()} if small else LLM_SHAPES
    if tokens is None:
        tokens = (1, 16, 64) if small else TOKENS
    fp8_ok = fp8_supported(dev)
    for name, (k, n) in shapes.items():
        b = torch.randn(k, n, device=dev, dtype=torch.bfloat16) / math.sqrt(k)
        b8 = b.t().contiguous().to(torch.float8_e4m3fn).t() if fp8_ok else None  # column-major for _scaled_mm
        one = torch.ones((), device=dev, dtype=torch.float32)
        for m in tokens:
            a = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            flops = 2.0 * m * k * n
            reps = reps_for(flops)
            t = timed(lambda a=a, b=b: torch.matmul(a, b), dev, reps)
            row = {"shape": name, "m": m, "k": k, "n": n, "dtype": "bf16", "seconds": t, "tflops": flops / t / 1e12,
                   "weight_bytes_per_s": k * n * 2 / t}
            out.append(row)
            if b8 is not None and m % 16 == 0:
                a8 = a.to(torch.float8_e4m3fn)
                for dtype, fast in (("fp8", False), ("fp8_fast_accum", True)):
                    t8 = timed(lambda a8=a8, b8=b8, one=one, fast=fast: torch._scaled_mm(
                        a8, b8, one, one, out_dtype=torch.bfloat16, use_fast_accum=fast), dev, reps)
                    out.append({"shape": name, "m": m, "k": k, "n": n, "dtype": dtype, "seconds": t8,
                                "tflops": flops / t8 / 1e12, "weight_bytes_per_s": k * n / t8})
        del b, b8
    return out


def bench_hbm(dev: str, small: bool) -> list[dict[str, Any]]:
    out = []
    for gib in ((0.01,) if small else (0.25, 1.0, 4.0)):
        n = int(gib * 2**30 / 2)
        x = torch.empty(n, device=dev, dtype=torch.bfloat16).normal_()
        y = torch.empty_like(x)
        t_read = timed(lambda x=x: x.sum(dtype=torch.float32), dev, 10)
        t_copy = timed(lambda x=x, y=y: y.copy_(x), dev, 10)
        out.append({"gib": gib, "read_bytes_per_s": 2 * n / t_read, "copy_bytes_per_s": 4 * n / t_copy})
        del x, y
    return out


def bench_attention(dev: str, small: bool) -> list[dict[str, Any]]:
    out = []
    d = 128
    for seq, heads in (((128, 4),) if small else ((2048, 32), (4096, 32), (8192, 32), (8192, 64))):
        batch = max(1, 16384 // seq)
        q = torch.randn(batch, heads, seq, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn_like(q, requires_grad=True)
        v = torch.randn_like(q, requires_grad=True)
        flops_fwd = 4.0 * batch * heads * seq * seq * d / 2  # causal: half the score matrix
        t_f = timed(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, is_causal=True), dev, 10)
        grad = torch.randn_like(q)

        def fwd_bwd(q: torch.Tensor = q, k: torch.Tensor = k, v: torch.Tensor = v, grad: torch.Tensor = grad) -> None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            torch.autograd.grad(o, (q, k, v), grad)

        t_fb = timed_eager(fwd_bwd, dev, 5)  # autograd is not captured in a graph; kernels are long enough
        out.append({"kind": "prefill_causal", "batch": batch, "heads": heads, "seq": seq, "head_dim": d,
                    "fwd_tflops": flops_fwd / t_f / 1e12, "fwd_bwd_tflops": 3.5 * flops_fwd / t_fb / 1e12,
                    "kernel": longest_kernel(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(
                        q, k, v, is_causal=True), dev)})
        del q, k, v, grad
    for batch, ctx in (((2, 256),) if small else ((1, 4096), (8, 4096), (32, 4096), (128, 4096), (32, 16384),
                                                   (128, 1024))):
        hq, hkv = 32, 8
        q = torch.randn(batch, hq, 1, d, device=dev, dtype=torch.bfloat16)
        kc = torch.randn(batch, hkv, ctx, d, device=dev, dtype=torch.bfloat16)
        vc = torch.randn_like(kc)
        t = timed(lambda q=q, kc=kc, vc=vc: F.scaled_dot_product_attention(q, kc, vc, enable_gqa=True), dev, 20)
        kv_bytes = 2 * batch * hkv * ctx * d * 2
        out.append({"kind": "decode_gqa", "batch": batch, "context": ctx, "q_heads": hq, "kv_heads": hkv,
                    "seconds": t, "kv_bytes_per_s": kv_bytes / t})
        del q, kc, vc
    return out + bench_prefix_attention(dev, small)


def longest_kernel(fn: Callable[[], Any], dev: str) -> str:
    """Name of the GPU kernel that takes longest in one call of ``fn`` (which attention kernel PyTorch
    chose); empty where the profiler sees no GPU."""
    if dev != "cuda":
        return ""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    return max(events, key=lambda e: e.device_time_total).key[:120] if events else ""


def bench_prefix_attention(dev: str, small: bool) -> list[dict[str, Any]]:
    """Attention of a prompt chunk after a prefix of its prompt (chunked prefill, prefix caching): causal
    from the prefix on (mask aligned bottom-right) with GQA, the same with the KV heads repeated, and with
    no mask over all keys (more work, but the kernel PyTorch picks for plain shapes)."""
    from torch.nn.attention.bias import causal_lower_right
    out = []
    d, hq, hkv = (64, 4, 2) if small else (128, 32, 8)
    for chunk, prefix in (((32, 64),) if small else ((512, 4096), (2048, 4096), (2048, 16384), (8192, 8192))):
        q = torch.randn(1, hq, chunk, d, device=dev, dtype=torch.bfloat16)
        k = torch.randn(1, hkv, prefix + chunk, d, device=dev, dtype=torch.bfloat16)
        v = torch.randn_like(k)
        mask = causal_lower_right(chunk, prefix + chunk)
        kr, vr = k.repeat_interleave(hq // hkv, 1), v.repeat_interleave(hq // hkv, 1)
        variants: dict[str, Callable[[], Any]] = {
            "lower_right_gqa": lambda q=q, k=k, v=v, m=mask: F.scaled_dot_product_attention(
                q, k, v, attn_mask=m, enable_gqa=True),
            "lower_right_repeated_kv": lambda q=q, k=kr, v=vr, m=mask: F.scaled_dot_product_attention(
                q, k, v, attn_mask=m),
            "no_mask_all_keys": lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
        }
        for variant, fn in variants.items():
            try:
                t = timed(fn, dev, 10)
            except RuntimeError as exc:
                out.append({"kind": "prefix_causal_error", "variant": variant, "chunk": chunk, "prefix": prefix,
                            "error": str(exc)[:200]})
                continue
            out.append({"kind": "prefix_causal", "variant": variant, "batch": 1, "q_heads": hq, "kv_heads": hkv,
                        "head_dim": d, "chunk": chunk, "prefix": prefix, "seconds": t,
                        "kernel": longest_kernel(fn, dev)})
        del q, k, v, kr, vr
    return out


MOE_SHAPES = {  # experts, hidden (K of the up projection), expert FFN width
    "qwen3_235b": (128, 4096, 1536),
    "gpt_oss_120b": (128, 2880, 2880),
    "deepseek_v3": (256, 7168, 2048),
}


def moe_shapes(small: bool) -> dict[str, tuple[int, int, int]]:
    """MOE_SHAPES, or an eighth of the experts and about a sixteenth of the widths for a dry run (multiples
    of 8, so that rows stay 16-byte aligned as torch._grouped_mm requires)."""
    def w(x: int) -> int:
        return x // 128 * 8
    return {k: (e // 8, w(h), w(f)) for k, (e, h, f) in MOE_SHAPES.items()} if small else MOE_SHAPES


def expert_weights(experts: int, hidden: int, ffn: int, dev: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Random gate+up (E, hidden, 2·ffn) and down (E, ffn, hidden) weights, column-major per expert
    as torch._grouped_mm wants its second operand."""
    up = torch.randn(experts, 2 * ffn, hidden, device=dev, dtype=torch.bfloat16) / math.sqrt(hidden)
    down = torch.randn(experts, hidden, ffn, device=dev, dtype=torch.bfloat16) / math.sqrt(ffn)
    return up.transpose(1, 2), down.transpose(1, 2)


def grouped_up_down(x: torch.Tensor, h: torch.Tensor, offs: torch.Tensor, up: torch.Tensor,
                    down: torch.Tensor) -> None:
    """One MoE layer's expert GEMMs: the gate+up projection of ``x`` and the down projection of ``h``,
    each one grouped GEMM over the experts' row ranges ``offs``."""
    torch._grouped_mm(x, up, offs=offs, out_dtype=torch.bfloat16)
    torch._grouped_mm(h, down, offs=offs, out_dtype=torch.bfloat16)


def bench_grouped(dev: str, small: bool) -> list[dict[str, Any]]:
    """MoE expert GEMMs as one grouped GEMM (torch._grouped_mm, BF16): the up (gate+up) and down
    projections of every expert, each expert given the same number of tokens, against the dense
    GEMM of the same total FLOPs and weights."""
    out: list[dict[str, Any]] = []
    if not hasattr(torch, "_grouped_mm"):
        return [{"error": "torch._grouped_mm needs torch >= 2.8"}]
    for name, (experts, hidden, ffn) in moe_shapes(small).items():
        w_up_t, w_down_t = expert_weights(experts, hidden, ffn, dev)
        for per_expert in (16, 32, 64, 128, 256, 512):
            tokens = experts * per_expert
            offs = torch.arange(1, experts + 1, device=dev, dtype=torch.int32) * per_expert
            x = torch.randn(tokens, hidden, device=dev, dtype=torch.bfloat16)
            h = torch.randn(tokens, ffn, device=dev, dtype=torch.bfloat16)
            flops = 2.0 * tokens * hidden * 3 * ffn
            weight_bytes = experts * hidden * 3 * ffn * 2
            try:
                t = timed(lambda x=x, h=h, offs=offs, up=w_up_t, down=w_down_t: grouped_up_down(x, h, offs, up, down),
                          dev, reps_for(flops))
            except Exception as exc:  # one shape's failure keeps the others
                out.append({"shape": name, "tokens_per_expert": per_expert, "error": f"{type(exc).__name__}: {exc}"})
                continue
            out.append({"shape": name, "experts": experts, "hidden": hidden, "ffn": ffn,
                        "tokens_per_expert": per_expert, "seconds": t, "tflops": flops / t / 1e12,
                        "weight_bytes_per_s": weight_bytes / t})
            del x, h
        del w_up_t, w_down_t
        if dev == "cuda":
            torch.cuda.empty_cache()
    return out


def bench_grouped_touched(dev: str, small: bool) -> list[dict[str, Any]]:
    """Decode-like MoE: only ``touched`` of the experts get tokens (1, 4 or 16 each), the others none,
    in one grouped GEMM per projection (torch._grouped_mm, BF16). Time against touched experts gives
    the weight-streaming rate of small expert matrices and the fixed time each expert adds."""
    out: list[dict[str, Any]] = []
    if not hasattr(torch, "_grouped_mm"):
        return [{"error": "torch._grouped_mm needs torch >= 2.8"}]
    for name, (experts, hidden, ffn) in moe_shapes(small).items():
        w_up, w_down = expert_weights(experts, hidden, ffn, dev)
        for per_expert in (1, 4, 16):
            for touched in sorted({max(1, experts // d) for d in (32, 16, 8, 4, 2, 1)}):
                counts = torch.zeros(experts, dtype=torch.int32)
                counts[:touched] = per_expert
                offs = torch.cumsum(counts, 0).to(device=dev, dtype=torch.int32)
                tokens = touched * per_expert
                x = torch.randn(tokens, hidden, device=dev, dtype=torch.bfloat16)
                h = torch.randn(tokens, ffn, device=dev, dtype=torch.bfloat16)
                row: dict[str, Any] = {"shape": name, "experts": experts, "hidden": hidden, "ffn": ffn,
                                       "touched": touched, "tokens_per_expert": per_expert}
                try:
                    t = timed(lambda x=x, h=h, offs=offs, up=w_up, down=w_down: grouped_up_down(x, h, offs, up, down),
                              dev, 20)
                except Exception as exc:  # one case's failure keeps the others
                    out.append({**row, "error": f"{type(exc).__name__}: {exc}"})
                    continue
                weight_bytes = touched * hidden * 3 * ffn * 2
                out.append({**row, "seconds": t, "weight_bytes_per_s": weight_bytes / t})
                del x, h
        del w_up, w_down
        if dev == "cuda":
            torch.cuda.empty_cache()
    return out


def timed_eager(fn: Callable[[], Any], dev: str, reps: int) -> float:
    fn()
    if dev == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if dev == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def kv_cache(model: Any, batch: int, ctx: int, dev: str) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """Random K and V caches of ``batch`` sequences of ``ctx`` tokens for each of ``model``'s layers,
    (batch, KV heads, ctx, head size) in BF16, and their bytes."""
    kc = [torch.randn(batch, model.hkv, ctx, model.d, device=dev, dtype=torch.bfloat16) for _ in range(model.layers)]
    vc = [torch.randn_like(t) for t in kc]
    return kc, vc, 2 * model.layers * batch * model.hkv * ctx * model.d * 2


# (hidden, FFN width, layers, query heads, KV heads, head size, vocabulary) of the models the decode steps
# take the shape of, and a tiny one for a dry run
STEP_SHAPES = {"llama-3.1-8b": (4096, 14336, 32, 32, 8, 128, 128256),
               "llama-3.1-70b": (8192, 28672, 80, 64, 8, 128, 128256), "tiny": (256, 512, 2, 4, 2, 64, 1000)}


class TinyLlama:
    """Llama-3.1-8B-shaped decoder with random weights: the matrices and memory traffic of a real step.
    ``model``/``tp``: another shape of :data:`STEP_SHAPES`, or one GPU's slice of it under tensor
    parallelism (its heads, FFN columns and vocabulary divided by ``tp``; no all-reduce)."""

    def __init__(self, dev: str, small: bool, model: str = "llama-3.1-8b", tp: int = 1) -> None:
        h, ffn, layers, hq, hkv, d, vocab = STEP_SHAPES["tiny" if small else model]
        self.h, self.ffn, self.layers, self.hq, self.hkv, self.d, self.vocab = (
            h, ffn // tp, layers, hq // tp, max(hkv // tp, 1), d, vocab // tp)
        def w(k: int, n: int) -> torch.Tensor:
            return torch.randn(k, n, device=dev, dtype=torch.bfloat16) / math.sqrt(k)
        self.qkv = [w(self.h, (self.hq + 2 * self.hkv) * self.d) for _ in range(self.layers)]
        self.o = [w(self.hq * self.d, self.h) for _ in range(self.layers)]
        self.gate_up = [w(self.h, 2 * self.ffn) for _ in range(self.layers)]
        self.down = [w(self.ffn, self.h) for _ in range(self.layers)]
        self.lm_head = w(self.h, self.vocab)
        self.dev = dev

    def params(self) -> int:
        per = self.h * (self.hq + 2 * self.hkv) * self.d + self.hq * self.d * self.h + 3 * self.h * self.ffn
        return self.layers * per + 2 * self.h * self.vocab

    def to_fp8(self) -> None:
        """FP8 (E4M3) copies of the layer weights, column-major as torch._scaled_mm wants, with per-tensor
        scales: the W8A8 path of the serving engines (the LM head stays BF16, as theirs)."""
        def q(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            scale = (w.abs().amax().float() / 448.0).reshape(())
            return (w.float() / scale).t().contiguous().to(torch.float8_e4m3fn).t(), scale
        self.fp8 = {name: [q(w) for w in getattr(self, name)] for name in ("qkv", "o", "gate_up", "down")}
        # activations here stay within |x| < 22 (normalized inputs, attention outputs, SiLU products)
        self.x_scale = torch.tensor(0.05, device=self.dev, dtype=torch.float32)
        self.x_inv_scale = torch.tensor(20.0, device=self.dev, dtype=torch.bfloat16)

    def mm(self, x: torch.Tensor, name: str, i: int, fp8: bool) -> torch.Tensor:
        """x @ W for layer i's ``name`` matrix; FP8: x scaled by a static per-tensor scale and cast (as
        FP8 checkpoints with calibrated activation scales run), then the FP8 GEMM."""
        if not fp8:
            return x @ getattr(self, name)[i]
        w8, w_scale = self.fp8[name][i]
        x8 = (x * self.x_inv_scale).to(torch.float8_e4m3fn)
        return torch._scaled_mm(x8, w8, self.x_scale, w_scale, out_dtype=torch.bfloat16)

    def step(self, x: torch.Tensor, kc: list[torch.Tensor], vc: list[torch.Tensor], fp8: bool = False,
             gemms_only: bool = False) -> torch.Tensor:
        """One decode step for x of shape (batch, hidden) against caches (batch, hkv, ctx, d).
        ``gemms_only``: the same matrix products with no norm, activation, residual or attention (the
        difference is what the rest of a layer costs)."""
        b = x.shape[0]
        for i in range(self.layers):
            if gemms_only:
                self.mm(x, "qkv", i, fp8)
                self.mm(x[:, : self.hq * self.d], "o", i, fp8)
                gu = self.mm(x, "gate_up", i, fp8)
                self.mm(gu[:, : self.ffn], "down", i, fp8)
                continue
            hn = F.rms_norm(x, (self.h,))
            qkv = self.mm(hn, "qkv", i, fp8)
            q = qkv[:, : self.hq * self.d].reshape(b, self.hq, 1, self.d)
            att = F.scaled_dot_product_attention(q, kc[i], vc[i], enable_gqa=True)
            x = x + self.mm(att.reshape(b, self.hq * self.d), "o", i, fp8)
            gu = self.mm(F.rms_norm(x, (self.h,)), "gate_up", i, fp8)
            x = x + self.mm((F.silu(gu[:, : self.ffn]) * gu[:, self.ffn :]).contiguous(), "down", i, fp8)
        return F.rms_norm(x, (self.h,)) @ self.lm_head

    def mixed(self, x: torch.Tensor, kc: list[torch.Tensor], vc: list[torch.Tensor], chunk: torch.Tensor,
              kp: list[torch.Tensor] | None, vp: list[torch.Tensor] | None) -> tuple[torch.Tensor, str]:
        """One chunked-prefill step: the decode rows x (batch, hidden) against caches (batch, hkv, ctx, d) and
        a prompt chunk (tokens, hidden) after ``kp``/``vp`` (1, hkv, prefix, d) of the same prompt, as one
        pass. The matrix products take both together; the chunk's attention is causal from its prefix on.
        Returns the logits (decode rows and the chunk's last token) and the attention path the chunk took."""
        b, p = x.shape[0], chunk.shape[0]
        h = torch.cat([x, chunk]) if b else chunk
        path = "causal"
        for i in range(self.layers):
            qkv = F.rms_norm(h, (self.h,)) @ self.qkv[i]
            att = []
            if b:
                q = qkv[:b, : self.hq * self.d].reshape(b, self.hq, 1, self.d)
                att.append(F.scaled_dot_product_attention(q, kc[i], vc[i], enable_gqa=True).reshape(b, -1))
            q, k, v = self._prompt_heads(qkv[b:])
            if kp is None or vp is None:
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            else:  # the engine's paged cache holds the prefix; here one copy of it joins the chunk's keys
                k, v = torch.cat([kp[i], k], dim=2), torch.cat([vp[i], v], dim=2)
                o, path = self._lower_right(q, k, v)
            att.append(o.transpose(1, 2).reshape(p, -1))
            h = h + torch.cat(att) @ self.o[i] if b else h + att[0] @ self.o[i]
            gu = F.rms_norm(h, (self.h,)) @ self.gate_up[i]
            h = h + (F.silu(gu[:, : self.ffn]) * gu[:, self.ffn :]) @ self.down[i]
        rows = torch.cat([h[:b], h[-1:]]) if b else h[-1:]
        return F.rms_norm(rows, (self.h,)) @ self.lm_head, path

    def _prompt_heads(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q, K and V of one prompt's rows of a QKV projection (tokens, (hq + 2·hkv)·d), each as
        (1, heads, tokens, d)."""
        p, hq, hkv, d = qkv.shape[0], self.hq, self.hkv, self.d
        q = qkv[:, : hq * d].view(1, p, hq, d).transpose(1, 2)
        k = qkv[:, hq * d : (hq + hkv) * d].view(1, p, hkv, d).transpose(1, 2)
        v = qkv[:, (hq + hkv) * d :].view(1, p, hkv, d).transpose(1, 2)
        return q, k, v

    def _lower_right(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Causal attention of the last q.shape[2] positions of k/v (the mask aligned bottom-right), GQA."""
        from torch.nn.attention.bias import causal_lower_right
        mask = causal_lower_right(q.shape[2], k.shape[2])
        try:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True), "lower_right"
        except RuntimeError:  # a backend without GQA for this mask: the KV heads repeated (extra traffic)
            rep = self.hq // self.hkv
            return F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                                  attn_mask=mask), "lower_right_repeated_kv"

    def prefill(self, x: torch.Tensor, fp8: bool = False) -> torch.Tensor:
        """Forward of one prompt x (1, seq, hidden) with causal attention; ``fp8``: the layers' matrix
        products in FP8 as in :meth:`mm` (attention stays BF16, as the engines' FP8 checkpoints run it)."""
        s = x.shape[1]
        h = x[0]
        for i in range(self.layers):
            q, k, v = self._prompt_heads(self.mm(F.rms_norm(h, (self.h,)), "qkv", i, fp8))
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            h = h + self.mm(att.transpose(1, 2).reshape(s, self.hq * self.d), "o", i, fp8)
            gu = self.mm(F.rms_norm(h, (self.h,)), "gate_up", i, fp8)
            h = h + self.mm((F.silu(gu[:, : self.ffn]) * gu[:, self.ffn :]).contiguous(), "down", i, fp8)
        return F.rms_norm(h[-1:], (self.h,)) @ self.lm_head


def bench_decode(dev: str, small: bool) -> list[dict[str, Any]]:
    model = TinyLlama(dev, small)
    fp8_ok = FORCE_FP8 or fp8_supported(dev)
    if fp8_ok:
        model.to_fp8()
    weight_bytes = model.params() * 2
    out: list[dict[str, Any]] = []
    cases = ((1, 128), (8, 128)) if small else tuple(
        (b, c) for c in (1024, 4096) for b in (1, 8, 32, 64, 128, 256) if b * c <= 262_144  # KV cache of at most ~34 GB
    )
    for batch, ctx in cases:
        kc, vc, kv_bytes = kv_cache(model, batch, ctx, dev)
        x = torch.randn(batch, model.h, device=dev, dtype=torch.bfloat16)
        t = timed(lambda x=x, kc=kc, vc=vc: model.step(x, kc, vc), dev, 3)
        out.append({"kind": "decode_step", "batch": batch, "context": ctx, "seconds": t,
                    "weight_bytes": weight_bytes, "kv_bytes": kv_bytes,
                    "achieved_bytes_per_s": (weight_bytes + kv_bytes) / t,
                    "tflops": 2.0 * model.params() * batch / t / 1e12})
        if ctx == cases[0][1]:  # the matrix products alone (no KV read: any context)
            t_g = timed(lambda x=x, kc=kc, vc=vc: model.step(x, kc, vc, gemms_only=True), dev, 3)
            out.append({"kind": "decode_gemms_only", "batch": batch, "seconds": t_g,
                        "weight_bytes": weight_bytes - 2 * model.h * model.vocab})
        if fp8_ok:
            pad = -(-batch // 16) * 16  # _scaled_mm takes multiples of 16 rows, as engines pad their graphs
            xp = torch.randn(pad, model.h, device=dev, dtype=torch.bfloat16)
            kcp = kc if pad == batch else [torch.randn(pad, *t.shape[1:], device=dev, dtype=t.dtype) for t in kc]
            vcp = vc if pad == batch else [torch.randn_like(t) for t in kcp]
            t8 = timed(lambda x=xp, kc=kcp, vc=vcp: model.step(x, kc, vc, fp8=True), dev, 3)
            out.append({"kind": "decode_step_fp8", "batch": batch, "padded_batch": pad, "context": ctx,
                        "seconds": t8, "kv_bytes": kv_bytes * pad // batch})
            del xp, kcp, vcp
        del kc, vc
        if dev == "cuda":
            torch.cuda.empty_cache()
    out += bench_mixed(model, dev, small)
    for seq in ((64,) if small else (512, 2048, 8192)):
        x = torch.randn(1, seq, model.h, device=dev, dtype=torch.bfloat16)
        t = timed_eager(lambda x=x: model.prefill(x), dev, 3)
        linear = 2.0 * (model.params() - model.h * model.vocab) * seq + 2.0 * model.h * model.vocab
        attn = 4.0 * model.layers * model.hq * model.d * seq * seq / 2
        out.append({"kind": "prefill", "seq": seq, "seconds": t, "tflops": (linear + attn) / t / 1e12})
        if fp8_ok and seq % 16 == 0:
            t8 = timed_eager(lambda x=x: model.prefill(x, fp8=True), dev, 3)
            out.append({"kind": "prefill_fp8", "seq": seq, "seconds": t8, "tflops": (linear + attn) / t8 / 1e12})
    return out


def bench_decode_tp(dev: str, small: bool) -> list[dict[str, Any]]:
    """Decode steps of one GPU's slice of Llama-3.1-8B and -70B under tensor parallelism 2, 4 and 8 (BF16,
    context 1,024; the all-reduces left out), and the same steps' matrix products alone."""
    out: list[dict[str, Any]] = []
    cases = (("llama-3.1-8b", 2),) if small else tuple(
        (m, tp) for m in ("llama-3.1-8b", "llama-3.1-70b") for tp in (2, 4, 8))
    ctx = 128 if small else 1024
    for name, tp in cases:
        model = TinyLlama(dev, small, name, tp)
        for batch in ((1, 8) if small else (1, 16, 64, 128)):
            kc, vc, kv_bytes = kv_cache(model, batch, ctx, dev)
            x = torch.randn(batch, model.h, device=dev, dtype=torch.bfloat16)
            t = timed(lambda x=x, kc=kc, vc=vc, m=model: m.step(x, kc, vc), dev, 3)
            t_g = timed(lambda x=x, kc=kc, vc=vc, m=model: m.step(x, kc, vc, gemms_only=True), dev, 3)
            out.append({"kind": "decode_step_tp_slice", "model": name, "tp": tp, "batch": batch, "context": ctx,
                        "seconds": t, "gemms_only_seconds": t_g, "weight_bytes": model.params() * 2,
                        "kv_bytes": kv_bytes})
            del kc, vc
        del model
        if dev == "cuda":
            torch.cuda.empty_cache()
    return out


class TinyMoE:
    """Qwen3-30B-A3B-shaped MoE decoder with random weights and a random router (so routing is about
    uniform): per layer GQA attention, then a softmax top-k router and the routed experts as two grouped
    GEMMs (torch._grouped_mm) over the token-expert pairs sorted by expert, gathered and scattered back."""

    def __init__(self, dev: str, small: bool) -> None:
        (self.h, self.layers, self.hq, self.hkv, self.d, self.experts, self.ffn, self.top_k, self.vocab) = (
            (256, 2, 4, 2, 64, 16, 64, 4, 1000) if small else (2048, 48, 32, 4, 128, 128, 768, 8, 151936))
        def w(k: int, n: int) -> torch.Tensor:
            return torch.randn(k, n, device=dev, dtype=torch.bfloat16) / math.sqrt(k)
        self.qkv = [w(self.h, (self.hq + 2 * self.hkv) * self.d) for _ in range(self.layers)]
        self.o = [w(self.hq * self.d, self.h) for _ in range(self.layers)]
        self.router = [w(self.h, self.experts) for _ in range(self.layers)]
        experts = [expert_weights(self.experts, self.h, self.ffn, dev) for _ in range(self.layers)]
        self.up, self.down = [e[0] for e in experts], [e[1] for e in experts]
        self.lm_head = w(self.h, self.vocab)
        self.dev = dev

    def weight_bytes(self) -> int:
        attn = self.h * (self.hq + 2 * self.hkv) * self.d + self.hq * self.d * self.h + self.h * self.experts
        return 2 * (self.layers * (attn + self.experts * 3 * self.h * self.ffn) + self.h * self.vocab)

    def step(self, x: torch.Tensor, kc: list[torch.Tensor], vc: list[torch.Tensor]) -> torch.Tensor:
        b = x.shape[0]
        ones = torch.ones(b * self.top_k, device=x.device, dtype=torch.int32)
        for i in range(self.layers):
            qkv = F.rms_norm(x, (self.h,)) @ self.qkv[i]
            q = qkv[:, : self.hq * self.d].reshape(b, self.hq, 1, self.d)
            att = F.scaled_dot_product_attention(q, kc[i], vc[i], enable_gqa=True)
            x = x + att.reshape(b, self.hq * self.d) @ self.o[i]
            hn = F.rms_norm(x, (self.h,))
            weights, chosen = torch.topk(torch.softmax((hn @ self.router[i]).float(), -1), self.top_k, dim=-1)
            weights = (weights / weights.sum(-1, keepdim=True)).to(torch.bfloat16).flatten()
            flat = chosen.flatten()
            order = torch.argsort(flat, stable=True)
            counts = torch.zeros(self.experts, device=x.device, dtype=torch.int32).scatter_add_(0, flat, ones)
            offs = torch.cumsum(counts, 0, dtype=torch.int32)
            token = order // self.top_k
            gu = torch._grouped_mm(hn[token], self.up[i], offs=offs, out_dtype=torch.bfloat16)
            act = F.silu(gu[:, : self.ffn]) * gu[:, self.ffn :]
            y = torch._grouped_mm(act, self.down[i], offs=offs, out_dtype=torch.bfloat16)
            x = x.index_add(0, token, y * weights[order, None])
        return F.rms_norm(x, (self.h,)) @ self.lm_head


def bench_decode_moe(dev: str, small: bool) -> list[dict[str, Any]]:
    """Whole decode steps of a Qwen3-30B-A3B-shaped MoE model (BF16, context 1,024), captured as a CUDA
    graph, over batch sizes."""
    if not hasattr(torch, "_grouped_mm"):
        return [{"error": "torch._grouped_mm needs torch >= 2.8"}]
    model = TinyMoE(dev, small)
    out: list[dict[str, Any]] = []
    ctx = 128 if small else 1024
    for batch in ((1, 8) if small else (1, 2, 4, 8, 16, 32, 64, 128, 256)):
        kc, vc, kv_bytes = kv_cache(model, batch, ctx, dev)
        x = torch.randn(batch, model.h, device=dev, dtype=torch.bfloat16)
        t = timed(lambda x=x, kc=kc, vc=vc: model.step(x, kc, vc), dev, 3)
        out.append({"kind": "moe_decode_step", "model": "qwen3-30b-a3b", "batch": batch, "context": ctx,
                    "seconds": t, "weight_bytes": model.weight_bytes(), "kv_bytes": kv_bytes})
        del kc, vc
        if dev == "cuda":
            torch.cuda.empty_cache()
    return out


def bench_mixed(model: TinyLlama, dev: str, small: bool) -> list[dict[str, Any]]:
    """Chunked-prefill steps: a prompt chunk of 512 or 2,048 tokens (first chunk, or after 4,096 tokens of
    its prompt) in one pass with 0, 32 or 128 decoding sequences at context 1,024 (the decode_step rows'
    context), timed as a CUDA graph where one captures, else eagerly."""
    out: list[dict[str, Any]] = []
    ctx = 128 if small else 1024
    for batch in ((0, 8) if small else (0, 32, 128)):
        kc, vc, _ = kv_cache(model, batch, ctx, dev)
        x = torch.randn(batch, model.h, device=dev, dtype=torch.bfloat16)
        for chunk_len in ((32,) if small else (512, 2048)):
            for prefix in ((0, 64) if small else (0, 4096)):
                chunk = torch.randn(chunk_len, model.h, device=dev, dtype=torch.bfloat16)
                kp, vp, _ = kv_cache(model, 1, prefix, dev) if prefix else (None, None, 0)
                path = model.mixed(x, kc, vc, chunk, kp, vp)[1]

                def step(x: torch.Tensor = x, kc: list[torch.Tensor] = kc, vc: list[torch.Tensor] = vc,
                         chunk: torch.Tensor = chunk, kp: list[torch.Tensor] | None = kp,
                         vp: list[torch.Tensor] | None = vp) -> None:
                    model.mixed(x, kc, vc, chunk, kp, vp)
                try:
                    t, timing = timed(step, dev, 3), "graph"
                except RuntimeError:
                    t, timing = timed_eager(step, dev, 3), "eager"
                out.append({"kind": "mixed_step", "batch": batch, "context": ctx, "chunk": chunk_len,
                            "prefix": prefix, "seconds": t, "timing": timing, "attention_path": path})
                del kp, vp
        del kc, vc
        if dev == "cuda":
            torch.cuda.empty_cache()
    return out


def smi(fields: str) -> str:
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable: {exc}"


def environment(dev: str) -> dict[str, Any]:
    env: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(), "device": dev,
                           "measured": time.strftime("%Y-%m-%d")}
    if dev == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        env["sm_count"] = torch.cuda.get_device_properties(0).multi_processor_count
        env["nvidia_smi"] = smi("name,driver_version,clocks.max.sm,clocks.max.mem,power.limit")
    return env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--sections", nargs="*", default=[], help="run only these sections (default: all)")
    ap.add_argument("--accelerator", default="", help="catalog id of the GPU (written to the file for "
                    "`factoryplan validate kernels`)")
    args = ap.parse_args()
    torch.manual_seed(0)
    result: dict[str, Any] = {"environment": environment(args.device)}
    if args.accelerator:
        result = {"accelerator": args.accelerator, **result}
    for name, fn in (("hbm", bench_hbm), ("gemm", bench_gemm), ("gemm_tp", bench_gemm_tp),
                     ("attention", bench_attention), ("decode", bench_decode), ("decode_tp", bench_decode_tp),
                     ("decode_moe", bench_decode_moe),
                     ("grouped_gemm", bench_grouped),
                     ("grouped_gemm_touched", bench_grouped_touched)):
        if args.sections and name not in args.sections:
            continue
        t0 = time.perf_counter()
        try:
            result[name] = fn(args.device, args.small)
        except Exception as exc:  # keep the other sections when one fails
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
        result[f"{name}_wall_s"] = time.perf_counter() - t0
        print(name, "done in", round(result[f"{name}_wall_s"], 1), "s", flush=True)
        if args.device == "cuda":  # clocks and power after each section: did the card throttle?
            result[f"{name}_smi"] = smi("clocks.sm,clocks.mem,power.draw,temperature.gpu")
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
