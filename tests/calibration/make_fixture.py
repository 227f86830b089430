#!/usr/bin/env python3
"""Writes the synthetic raw files of tests/calibration/ (odyssey-raw/1, as kernels/ writes them).

They are NOT measurements: no GPU has been available to the project. Times come from the simple
made-up formulas below so that the import and cost-model tests have recorded data whose expected
values they can recompute. The GPU is named "fixture" so that no profile built from them can pass
for a real GPU's (importing needs --gpu). Run from anywhere: python3 make_fixture.py
"""
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
PROVENANCE = {
    "tool": "make_fixture.py",
    "gpu": {"name": "fixture", "compute_capability": "9.0", "sms": 132, "memory_bytes": 85899345920,
            "l2_bytes": 52428800, "sm_clock_mhz": 1980, "memory_clock_mhz": 2619, "memory_bus_bits": 5120},
    "driver": "0.0", "cuda_runtime": "0.0",
    "libraries": {},
    "host_hash": "0000000000000000",
    "date": "2026-11-25T00:00:00Z",
    "commit": "fixture",
    "notes": "synthetic test fixture, not a measurement",
}
POLICY = {"warmup": 5, "min_samples": 10, "max_samples": 100, "target_sample_s": 0.001, "budget_s": 2.0,
          "stable_rel": 0.01}
PEAK = {"bf16": 989.4e12, "fp8": 1978.9e12, "tf32": 494.7e12}  # the H100 datasheet profile's peaks


def timing(t):
    return {"median_s": t, "min_s": t * 0.98, "max_s": t * 1.05, "p10_s": t * 0.99, "p90_s": t * 1.02,
            "spread": 0.03, "samples": 10, "launches_per_sample": 1, "stable": True}


def write(name, benchmark, results, libraries):
    prov = dict(PROVENANCE, libraries=libraries)
    with open(os.path.join(HERE, name), "w") as out:
        out.write('{\n "format": "odyssey-raw/1",\n "benchmark": "%s",\n' % benchmark)
        out.write(' "provenance": %s,\n "policy": %s,\n "results": [' % (json.dumps(prov), json.dumps(POLICY)))
        out.write(",".join("\n  " + json.dumps(r) for r in results))
        out.write("\n ]\n}\n")


def gemm_efficiency(m, n, k, dtype):
    """Made up: large shapes reach 75% (fp8 65%) of peak, each small dimension costs some."""
    best = 0.65 if dtype == "fp8" else 0.75
    return best * math.prod(1 - 0.5 * math.exp(-d / 2048) for d in (m, n, k))


def gemm_results():
    results = []
    sizes = [1024, 4096, 16384]
    for dtype in ("bf16", "fp8", "tf32"):
        for m in sizes:
            for n in sizes:
                for k in sizes:
                    flops = 2.0 * m * n * k
                    t = flops / (PEAK[dtype] * gemm_efficiency(m, n, k, dtype))
                    # Two layouts of the same shape, 4% apart: the import averages them.
                    for role, layout, factor in (("fprop", "TN", 0.98), ("dgrad", "NN", 1.02)):
                        results.append({"name": "fixture", "role": role, "layout": layout, "dtype": dtype, "m": m,
                                        "n": n, "k": k, "batch": 1, "flops": flops, "status": "ok",
                                        "time": timing(t * factor), "tflops": flops / (t * factor) / 1e12})
    results.append({"name": "fixture", "role": "fprop", "layout": "TN", "dtype": "bf16", "m": 65536, "n": 65536,
                    "k": 65536, "batch": 1, "flops": 2.0 * 65536 ** 3, "status": "out_of_memory",
                    "reason": "operands do not fit in device memory"})
    return results


def attention_results():
    results = []
    for seq in (2048, 8192):
        for passname, factor, eff in (("forward", 1, 0.55), ("backward", 2, 0.45)):
            b, h, d = 8, 32, 128
            flops = factor * 4.0 * b * h * seq * seq * d
            t = 0.5 * flops / (PEAK["bf16"] * eff)
            results.append({"name": "sdpa", "pass": passname, "batch": b, "heads": h, "kv_heads": 8, "seq_q": seq,
                            "seq_kv": seq, "head_dim": d, "causal": True, "dtype": "bf16", "flops": flops,
                            "status": "ok", "time": timing(t), "tflops": flops / t / 1e12})
    return results


def memory_results():
    results = []
    rates = {"layernorm": 2.6e12, "rmsnorm": 2.7e12, "gelu": 2.9e12, "swiglu": 2.8e12, "dropout_residual": 2.75e12,
             "softmax_cross_entropy": 2.5e12, "adam": 3.0e12}
    for kernel, rate in rates.items():
        for scale in (1, 4):
            nbytes = 2.0 ** 28 * scale
            # the smaller case runs slower: the import must use the largest
            t = nbytes / (rate * (0.7 if scale == 1 else 1.0))
            results.append({"kernel": kernel, "shape": {"elements": int(nbytes / 4)}, "bytes": nbytes,
                            "status": "ok", "time": timing(t), "gb_per_s": nbytes / t / 1e9})
    results.append({"kernel": "d2d_copy", "shape": {"size": 2 ** 30}, "bytes": 2.0 ** 31, "status": "ok",
                    "time": timing(2.0 ** 31 / 2.9e12), "gb_per_s": 2900.0})
    results.append({"kernel": "empty_kernel", "shape": {}, "bytes": 0.0, "status": "ok", "time": timing(2.5e-6),
                    "gb_per_s": 0.0})
    return results


def nccl_results(n=8, nodes=1, busbw=360e9):
    results = []
    for op, factor in (("all-reduce", 2.0 * (n - 1) / n), ("all-gather", (n - 1) / n)):
        size = 8
        while size <= 2 ** 30:
            # latency + size / (a made-up bus bandwidth), in nccl-tests' terms
            t = 20e-6 + size * factor / busbw
            algbw = size / t / 1e9
            results.append({"op": op, "bytes": size, "count": size // 4 if op == "all-reduce" else max(1, size // 4 // n),
                            "type": "float", "ranks": n, "nodes": nodes, "status": "ok", "time": timing(t),
                            "algbw_gbps": algbw, "busbw_gbps": algbw * factor})
            size *= 8
    return results


write("fixture-gemm.json", "gemm", gemm_results(), {"cublasLt": "0"})
write("fixture-attention.json", "attention", attention_results(), {"cudnn": "0"})
write("fixture-memory.json", "memory", memory_results(), {})
write("fixture-nccl.json", "nccl", nccl_results(), {"nccl": "0"})
# An MPI run over two 8-GPU nodes: the ring crosses the NICs at a made-up 45 GB/s of bus bandwidth.
write("fixture-nccl-2nodes.json", "nccl", nccl_results(n=16, nodes=2, busbw=45e9), {"nccl": "0"})
