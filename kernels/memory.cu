// odyssey_bench_memory: the memory-bound kernels of a transformer layer, written here as
// frameworks write them (one fused kernel each, bf16 activations, fp32 statistics), the fused
// Adam step, device-to-device copy bandwidth and the cost of launching an empty kernel. Each
// result records the bytes the kernel must move (reads + writes), so achieved bandwidth is
// bytes / time. Writes a raw result file (kernels/README.md).
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <cuda_bf16.h>

#include "kernels/bench_common.hpp"

namespace odyssey::bench {
namespace {

constexpr const char* TOOL = "odyssey_bench_memory";
constexpr int BLOCK = 256;
using bf16 = __nv_bfloat16;

// ---- kernels -----------------------------------------------------------------------------------

/// Sum over the block; every thread gets the result. `scratch` holds one float per warp.
__device__ float block_sum(float v, float* scratch) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += scratch[w];
  return total;
}

__device__ float block_max(float v, float* scratch) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = -INFINITY;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) m = fmaxf(m, scratch[w]);
  return m;
}

/// LayerNorm (RMSNorm when `rms`) over rows of `h`: one block per row, fp32 statistics saved for
/// the backward pass, as Apex/Transformer Engine do.
__global__ void norm_forward(const bf16* x, const bf16* gamma, const bf16* beta, bf16* y, float* mean_out,
                             float* rstd_out, long h, bool rms) {
  __shared__ float scratch[32];
  const long row = blockIdx.x;
  const bf16* xr = x + row * h;
  float s = 0.0f, s2 = 0.0f;
  for (long i = threadIdx.x; i < h; i += blockDim.x) {
    const float v = __bfloat162float(xr[i]);
    s += v;
    s2 += v * v;
  }
  const float mean = rms ? 0.0f : block_sum(s, scratch) / h;
  const float var = block_sum(s2, scratch) / h - mean * mean;
  const float rstd = rsqrtf(var + 1e-5f);
  for (long i = threadIdx.x; i < h; i += blockDim.x) {
    const float v = (__bfloat162float(xr[i]) - mean) * rstd * __bfloat162float(gamma[i]);
    y[row * h + i] = __float2bfloat16(rms ? v : v + __bfloat162float(beta[i]));
  }
  if (threadIdx.x == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

__global__ void gelu_forward(const bf16* x, bf16* y, long n) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    const float v = __bfloat162float(x[i]);
    y[i] = __float2bfloat16(0.5f * v * (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v))));
  }
}

/// SwiGLU: the up projection's output holds [gate | value] per row; y = silu(gate) * value.
__global__ void swiglu_forward(const bf16* x, bf16* y, long rows, long f) {
  const long n = rows * f;
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    const long r = i / f, c = i % f;
    const float g = __bfloat162float(x[r * 2 * f + c]);
    const float v = __bfloat162float(x[r * 2 * f + f + c]);
    y[i] = __float2bfloat16(g / (1.0f + __expf(-g)) * v);
  }
}

/// Fused softmax cross-entropy over a row of logits: loss, and the logits' gradient
/// (softmax - one-hot) written in the same pass, as Megatron-LM's fused cross-entropy does.
__global__ void softmax_cross_entropy(const bf16* logits, const int* labels, float* loss, bf16* grad,
                                      long vocab) {
  __shared__ float scratch[32];
  const long row = blockIdx.x;
  const bf16* lr = logits + row * vocab;
  float m = -INFINITY;
  for (long i = threadIdx.x; i < vocab; i += blockDim.x) m = fmaxf(m, __bfloat162float(lr[i]));
  m = block_max(m, scratch);
  float s = 0.0f;
  for (long i = threadIdx.x; i < vocab; i += blockDim.x) s += __expf(__bfloat162float(lr[i]) - m);
  s = block_sum(s, scratch);
  const int label = labels[row];
  for (long i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float p = __expf(__bfloat162float(lr[i]) - m) / s;
    grad[row * vocab + i] = __float2bfloat16(p - (i == label ? 1.0f : 0.0f));
  }
  if (threadIdx.x == 0) loss[row] = logf(s) + m - __bfloat162float(lr[label]);
}

/// out = residual + dropout(x), keeping the mask for the backward pass (one byte per element).
__global__ void dropout_residual(const bf16* x, const bf16* residual, bf16* out, unsigned char* mask, long n,
                                 float p, unsigned seed) {
  const float scale = 1.0f / (1.0f - p);
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    unsigned h = static_cast<unsigned>(i) * 0x9E3779B1u ^ seed;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    const bool keep = (h & 0xFFFFFFu) >= static_cast<unsigned>(p * 16777216.0f);
    mask[i] = keep;
    out[i] = __float2bfloat16(__bfloat162float(residual[i]) + (keep ? __bfloat162float(x[i]) * scale : 0.0f));
  }
}

/// Mixed-precision Adam on fp32 master weights, moments and gradients, writing the bf16 copy of
/// the weights the next forward pass reads (Apex FusedAdam / Megatron-LM's distributed optimizer).
__global__ void adam_step(float* p, const float* g, float* m, float* v, bf16* p_half, long n, float lr,
                          float b1, float b2, float eps, float wd, float c1, float c2) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    const float pi = p[i] - lr * ((mi / c1) / (sqrtf(vi / c2) + eps) + wd * p[i]);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
    p_half[i] = __float2bfloat16(pi);
  }
}

__global__ void empty_kernel() {}

// ---- measurement --------------------------------------------------------------------------------

struct Buffers {
  std::vector<void*> ptrs;
  ~Buffers() {
    for (void* p : ptrs) cudaFree(p);
  }
  /// Null on out-of-memory (the case is skipped); other failures throw.
  void* get(std::size_t bytes) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      return nullptr;
    }
    ODY_CUDA(e);
    ptrs.push_back(p);
    return p;
  }
};

unsigned grid_for(long n) {
  return static_cast<unsigned>(std::min<long>((n + BLOCK - 1) / BLOCK, 65535L * 8));
}

struct Case {
  std::string kernel;
  nlohmann::ordered_json shape;
  double bytes = 0; ///< HBM bytes the kernel must move, reads + writes
  /// Allocates into `b` and returns the launch, or an empty function when memory ran out.
  std::function<std::function<void(cudaStream_t)>(Buffers& b, cudaStream_t s)> setup;
};

nlohmann::ordered_json run_case(const Case& c, cudaStream_t stream, const TimingPolicy& policy) {
  nlohmann::ordered_json r;
  r["kernel"] = c.kernel;
  r["shape"] = c.shape;
  r["bytes"] = c.bytes;
  Buffers b;
  const auto launch = c.setup(b, stream);
  if (!launch) {
    r["status"] = "out_of_memory";
    r["reason"] = "buffers do not fit in device memory";
    return r;
  }
  ODY_CUDA(cudaStreamSynchronize(stream));
  const Timing t = measure(launch, stream, policy);
  r["status"] = "ok";
  r["time"] = t.to_json();
  r["gb_per_s"] = c.bytes / t.median_s / 1e9;
  return r;
}

std::vector<Case> cases(bool quick) {
  std::vector<Case> out;
  const std::vector<long> token_counts =
      quick ? std::vector<long>{8192} : std::vector<long>{2048, 8192, 16384};
  const std::vector<long> hiddens =
      quick ? std::vector<long>{4096, 8192} : std::vector<long>{2048, 4096, 8192, 12288, 16384};
  for (long t : token_counts) {
    for (long h : hiddens) {
      const long n = t * h;
      const nlohmann::ordered_json shape = {{"tokens", t}, {"hidden", h}};
      for (bool rms : {false, true}) {
        out.push_back({rms ? "rmsnorm" : "layernorm", shape, 2.0 * n * 2 + 2.0 * h * 2 + 8.0 * t,
                       [=](Buffers& b, cudaStream_t s) -> std::function<void(cudaStream_t)> {
                         auto* x = static_cast<bf16*>(b.get(n * 2));
                         auto* y = static_cast<bf16*>(b.get(n * 2));
                         auto* gb = static_cast<bf16*>(b.get(2 * h * 2));
                         auto* st = static_cast<float*>(b.get(2 * t * 4));
                         if (!x || !y || !gb || !st) return {};
                         fill_random(x, n, ElementType::BF16, 3, s);
                         fill_random(gb, 2 * h, ElementType::BF16, 4, s);
                         return [=](cudaStream_t st2) {
                           norm_forward<<<t, BLOCK, 0, st2>>>(x, gb, gb + h, y, st, st + t, h, rms);
                         };
                       }});
      }
      out.push_back(
          {"gelu", shape, 4.0 * n, [=](Buffers& b, cudaStream_t s) -> std::function<void(cudaStream_t)> {
             auto* x = static_cast<bf16*>(b.get(n * 2));
             auto* y = static_cast<bf16*>(b.get(n * 2));
             if (!x || !y) return {};
             fill_random(x, n, ElementType::BF16, 5, s);
             return [=](cudaStream_t st) { gelu_forward<<<grid_for(n), BLOCK, 0, st>>>(x, y, n); };
           }});
      // SwiGLU on the MLP's intermediate width (8/3 h, Llama's choice) rounded to 256.
      const long f = ((8 * h / 3) + 255) / 256 * 256;
      out.push_back({"swiglu",
                     {{"tokens", t}, {"hidden", h}, {"ffn", f}},
                     3.0 * t * f * 2,
                     [=](Buffers& b, cudaStream_t s) -> std::function<void(cudaStream_t)> {
                       auto* x = static_cast<bf16*>(b.get(2 * t * f * 2));
                       auto* y = static_cast<bf16*>(b.get(t * f * 2));
                       if (!x || !y) return {};
                       fill_random(x, 2 * t * f, ElementType::BF16, 6, s);
                       return [=](cudaStream_t st) {
                         swiglu_forward<<<grid_for(t * f), BLOCK, 0, st>>>(x, y, t, f);
                       };
                     }});
      out.push_back({"dropout_residual", shape, 7.0 * n,
                     [=](Buffers& b, cudaStream_t s) -> std::function<void(cudaStream_t)> {
                       auto* x = static_cast<bf16*>(b.get(n * 2));
                       auto* res = static_cast<bf16*>(b.get(n * 2));
                       auto* y = static_cast<bf16*>(b.get(n * 2));
                       auto* mask = static_cast<unsigned char*>(b.get(n));
                       if (!x || !res || !y || !mask) return {};
                       fill_random(x, n, ElementType::BF16, 7, s);
                       fill_random(res, n, ElementType::BF16, 8, s);
                       return [=](cudaStream_t st) {
                         dropout_residual<<<grid_for(n), BLOCK, 0, st>>>(x, res, y, mask, n, 0.1f, 1234u);
                       };
                     }});
    }
    for (long vocab : quick ? std::vector<long>{51200} : std::vector<long>{32000, 51200, 128256}) {
      const long n = t * vocab;
      out.push_back({"softmax_cross_entropy",
                     {{"tokens", t}, {"vocab", vocab}},
                     4.0 * n + 8.0 * t,
                     [=](Buffers& b, cudaStream_t s) -> std::function<void(cudaStream_t)> {
                       auto* logits = static_cast<bf16*>(b.get(n * 2));
                       auto* grad = static_cast<bf16*>(b.get(n * 2));
                       auto* labels = static_cast<int*>(b.get(t * 4));
                       auto* loss = static_cast<float*>(b.get(t * 4));
                       if (!logits || !grad || !labels || !loss) return {};
                       fill_random(logits, n, ElementType::BF16, 9, s);
                       ODY_CUDA(cudaMemsetAsync(labels, 0, t * 4, s)); // label 0 for every token
                       return [=](cudaStream_t st) {
                         softmax_cross_entropy<<<t, BLOCK, 0, st>>>(logits, labels, loss, grad, vocab);
                       };
                     }});
    }
  }
  for (long n : quick ? std::vector<long>{64L << 20}
                      : std::vector<long>{16L << 20, 64L << 20, 256L << 20, 1024L << 20}) {
    out.push_back({"adam",
                   {{"params", n}},
                   30.0 * n,
                   [=](Buffers& b, cudaStream_t s) -> std::function<void(cudaStream_t)> {
                     auto* p = static_cast<float*>(b.get(n * 4));
                     auto* g = static_cast<float*>(b.get(n * 4));
                     auto* m = static_cast<float*>(b.get(n * 4));
                     auto* v = static_cast<float*>(b.get(n * 4));
                     auto* ph = static_cast<bf16*>(b.get(n * 2));
                     if (!p || !g || !m || !v || !ph) return {};
                     fill_random(p, n, ElementType::FP32, 10, s);
                     fill_random(g, n, ElementType::FP32, 11, s);
                     ODY_CUDA(cudaMemsetAsync(m, 0, n * 4, s));
                     ODY_CUDA(cudaMemsetAsync(v, 0, n * 4, s));
                     return [=](cudaStream_t st) {
                       adam_step<<<grid_for(n), BLOCK, 0, st>>>(p, g, m, v, ph, n, 1e-4f, 0.9f, 0.95f, 1e-8f,
                                                                0.1f, 0.1f, 0.05f);
                     };
                   }});
  }
  for (long bytes : quick ? std::vector<long>{256L << 20}
                          : std::vector<long>{64L << 20, 256L << 20, 1024L << 20, 4096L << 20}) {
    out.push_back({"d2d_copy",
                   {{"size", bytes}},
                   2.0 * bytes,
                   [=](Buffers& b, cudaStream_t) -> std::function<void(cudaStream_t)> {
                     void* src = b.get(bytes);
                     void* dst = b.get(bytes);
                     if (!src || !dst) return {};
                     return [=](cudaStream_t st) {
                       ODY_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st));
                     };
                   }});
  }
  // Back-to-back launches of an empty kernel: the GPU-side cost of one launch.
  out.push_back({"empty_kernel", nlohmann::ordered_json::object(), 0.0,
                 [](Buffers&, cudaStream_t) -> std::function<void(cudaStream_t)> {
                   return [](cudaStream_t st) { empty_kernel<<<1, 32, 0, st>>>(); };
                 }});
  return out;
}

int bench(int argc, char** argv) {
  const Args args(argc, argv, {}, {});
  if (!start(args, TOOL,
             "--out FILE [--quick] [--device N]\n"
             "  memory-bound layer kernels, fused Adam, device-to-device copy, empty-kernel launch"))
    return 0;
  const int device = args.device();
  cudaStream_t stream = nullptr;
  ODY_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const TimingPolicy policy = TimingPolicy::for_mode(args.quick());
  const std::vector<Case> list = cases(args.quick());
  std::vector<nlohmann::ordered_json> results;
  for (const Case& c : list) {
    results.push_back(run_case(c, stream, policy));
    std::fprintf(stderr, "\r%s: %zu/%zu", TOOL, results.size(), list.size());
  }
  std::fprintf(stderr, "\n");
  ODY_CUDA(cudaStreamDestroy(stream));
  write_raw(args.out(), "memory",
            provenance(device, TOOL, {},
                       "bf16 activations, fp32 statistics and optimizer state; bytes = reads + writes"),
            policy, results);
  return 0;
}

} // namespace
} // namespace odyssey::bench

int main(int argc, char** argv) {
  return odyssey::bench::run_main("odyssey_bench_memory", [&] { return odyssey::bench::bench(argc, argv); });
}
