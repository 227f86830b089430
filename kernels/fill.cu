// Reproducible pseudo-random fill of benchmark buffers (see fill_random in bench_common.hpp).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "kernels/bench_common.hpp"

namespace odyssey::bench {

namespace {

/// A value in [-1, 1) from the element index and the seed (a 32-bit integer hash, no state).
__device__ float hashed_unit(std::size_t i, std::uint32_t seed) {
  std::uint32_t x =
      static_cast<std::uint32_t>(i) ^ (static_cast<std::uint32_t>(i >> 32) * 0x9E3779B9u) ^ seed;
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return static_cast<float>(x >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

template <class T> __global__ void fill_kernel(T* data, std::size_t count, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    data[i] = T(hashed_unit(i, seed));
}

template <class T> void launch_fill(void* data, std::size_t count, std::uint32_t seed, cudaStream_t stream) {
  if (count == 0) return;
  const std::size_t blocks = std::min<std::size_t>((count + 255) / 256, 65535);
  fill_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(static_cast<T*>(data), count, seed);
  ODY_CUDA(cudaGetLastError());
}

} // namespace

void fill_random(void* data, std::size_t count, ElementType type, std::uint32_t seed, cudaStream_t stream) {
  switch (type) {
  case ElementType::FP32: launch_fill<float>(data, count, seed, stream); break;
  case ElementType::FP16: launch_fill<__half>(data, count, seed, stream); break;
  case ElementType::BF16: launch_fill<__nv_bfloat16>(data, count, seed, stream); break;
  case ElementType::FP8_E4M3: launch_fill<__nv_fp8_e4m3>(data, count, seed, stream); break;
  }
}

} // namespace odyssey::bench
