// odyssey_bench_gemm: cuBLASLt GEMMs of the shapes transformer layers produce, in fp32, tf32,
// fp16, bf16 and fp8 (where the GPU has it), forward and both backward layouts. Writes a raw
// result file (kernels/README.md).
#include <cstdio>
#include <memory>

#include <cublasLt.h>

#include "kernels/bench_common.hpp"
#include "kernels/shapes.hpp"

namespace odyssey::bench {
namespace {

constexpr const char* TOOL = "odyssey_bench_gemm";
constexpr std::size_t WORKSPACE_BYTES = 32u << 20; // PyTorch's default cuBLASLt workspace on Hopper

void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) fail_call("cuBLASLt", call, file, line, cublasLtGetStatusString(s));
}
#define ODY_CUBLAS(call) check_cublas((call), #call, __FILE__, __LINE__)

struct DtypeSpec {
  std::string name;
  cudaDataType_t ab;
  cudaDataType_t cd;
  cublasComputeType_t compute;
  ElementType ab_fill;
  ElementType cd_fill;
  int min_cc; ///< lowest compute capability with this tensor-core type
};

const std::vector<DtypeSpec>& dtypes() {
  static const std::vector<DtypeSpec> all = {
      {"fp32", CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, ElementType::FP32, ElementType::FP32, 0},
      {"tf32", CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, ElementType::FP32, ElementType::FP32,
       80},
      {"fp16", CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_32F, ElementType::FP16, ElementType::FP16, 70},
      {"bf16", CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, ElementType::BF16, ElementType::BF16, 80},
      // Transformer Engine's fp8 GEMMs: e4m3 inputs, bf16 output, fp32 accumulation.
      {"fp8", CUDA_R_8F_E4M3, CUDA_R_16BF, CUBLAS_COMPUTE_32F, ElementType::FP8_E4M3, ElementType::BF16, 89},
  };
  return all;
}

const DtypeSpec* find_dtype(const std::string& name) {
  for (const DtypeSpec& d : dtypes())
    if (d.name == name) return &d;
  return nullptr;
}

/// Owns a cuBLASLt descriptor.
template <class T, cublasStatus_t (*Destroy)(T)> struct Lt {
  T handle = nullptr;
  ~Lt() {
    if (handle) Destroy(handle);
  }
};
using LayoutDesc = Lt<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>;
using MatmulDesc = Lt<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>;
using PrefDesc = Lt<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy>;

struct DeviceBuffer {
  void* ptr = nullptr;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  /// False on out-of-memory (the case is skipped); any other failure throws.
  bool allocate(std::size_t bytes) {
    const cudaError_t e = cudaMalloc(&ptr, bytes);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError(); // clear the sticky-free error so later calls are not blamed
      ptr = nullptr;
      return false;
    }
    ODY_CUDA(e);
    return true;
  }
};

void make_layout(LayoutDesc& d, cudaDataType_t type, long rows, long cols, long batch) {
  ODY_CUBLAS(cublasLtMatrixLayoutCreate(&d.handle, type, rows, cols, rows));
  if (batch > 1) {
    const int count = static_cast<int>(batch);
    const long long stride = static_cast<long long>(rows) * cols;
    ODY_CUBLAS(
        cublasLtMatrixLayoutSetAttribute(d.handle, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
    ODY_CUBLAS(cublasLtMatrixLayoutSetAttribute(d.handle, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                &stride, sizeof stride));
  }
}

/// Measures one GEMM; returns its raw result (status "ok", "unsupported" or "out_of_memory").
nlohmann::ordered_json run_case(cublasLtHandle_t lt, const GemmCase& g, const DtypeSpec& dt, void* workspace,
                                cudaStream_t stream, const TimingPolicy& policy) {
  // Row-major C[m,n] = op(A)[m,k] op(B)[k,n] is column-major C^T[n,m] = op(B^T) op(A^T): cuBLAS
  // sees M = n, N = m, with B's storage as its first operand. fprop stores B as a weight [n,k]
  // (transposed), wgrad stores A as [k,m]. fp8 GEMMs only exist as column-major "TN" (both
  // operands K-major), so Transformer Engine transposes fp8 operands first and runs every fp8
  // GEMM in that layout; so does this benchmark.
  bool a_t = g.role == "wgrad";
  bool b_t = g.role == "fprop";
  if (dt.name == "fp8") a_t = false, b_t = true;
  const cublasOperation_t op_first = b_t ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = a_t ? CUBLAS_OP_T : CUBLAS_OP_N;
  const std::string layout =
      std::string(op_first == CUBLAS_OP_T ? "T" : "N") + (op_second == CUBLAS_OP_T ? "T" : "N");

  nlohmann::ordered_json r;
  r["name"] = g.name;
  r["role"] = g.role;
  r["layout"] = layout;
  r["dtype"] = dt.name;
  r["m"] = g.m;
  r["n"] = g.n;
  r["k"] = g.k;
  r["batch"] = g.batch;
  if (g.hidden > 0) {
    r["hidden"] = g.hidden;
    r["tp"] = g.tp;
    r["tokens"] = g.tokens;
  }
  const double flops = 2.0 * double(g.m) * double(g.n) * double(g.k) * double(g.batch);
  r["flops"] = flops;

  LayoutDesc first, second, out;
  make_layout(first, dt.ab, b_t ? g.k : g.n, b_t ? g.n : g.k, g.batch);
  make_layout(second, dt.ab, a_t ? g.m : g.k, a_t ? g.k : g.m, g.batch);
  make_layout(out, dt.cd, g.n, g.m, g.batch);
  MatmulDesc op;
  ODY_CUBLAS(cublasLtMatmulDescCreate(&op.handle, dt.compute, CUDA_R_32F));
  ODY_CUBLAS(
      cublasLtMatmulDescSetAttribute(op.handle, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first));
  ODY_CUBLAS(
      cublasLtMatmulDescSetAttribute(op.handle, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second));
  if (dt.name == "fp8") {
    const std::int8_t fast_accum = 1; // Transformer Engine's forward setting
    ODY_CUBLAS(cublasLtMatmulDescSetAttribute(op.handle, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast_accum,
                                              sizeof fast_accum));
  }
  PrefDesc pref;
  ODY_CUBLAS(cublasLtMatmulPreferenceCreate(&pref.handle));
  const std::uint64_t ws = WORKSPACE_BYTES;
  ODY_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref.handle, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                  sizeof ws));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(
      lt, op.handle, first.handle, second.handle, out.handle, out.handle, pref.handle, 1, &heuristic, &found);
  if (hs == CUBLAS_STATUS_NOT_SUPPORTED || (hs == CUBLAS_STATUS_SUCCESS && found == 0)) {
    r["status"] = "unsupported";
    r["reason"] = "cuBLASLt has no algorithm for this shape and dtype";
    return r;
  }
  ODY_CUBLAS(hs);

  const double ab = static_cast<double>(element_bytes(dt.ab_fill));
  const double cd = static_cast<double>(element_bytes(dt.cd_fill));
  DeviceBuffer a, b, c;
  const std::size_t a_count = static_cast<std::size_t>(g.m) * g.k * g.batch;
  const std::size_t b_count = static_cast<std::size_t>(g.k) * g.n * g.batch;
  const std::size_t c_count = static_cast<std::size_t>(g.m) * g.n * g.batch;
  if (!a.allocate(a_count * ab) || !b.allocate(b_count * ab) || !c.allocate(c_count * cd)) {
    r["status"] = "out_of_memory";
    r["reason"] = "operands do not fit in device memory";
    return r;
  }
  fill_random(a.ptr, a_count, dt.ab_fill, 1, stream);
  fill_random(b.ptr, b_count, dt.ab_fill, 2, stream);
  const float alpha = 1.0f;
  const float beta = 0.0f;
  const Timing t = measure(
      [&](cudaStream_t s) {
        ODY_CUBLAS(cublasLtMatmul(lt, op.handle, &alpha, b.ptr, first.handle, a.ptr, second.handle, &beta,
                                  c.ptr, out.handle, c.ptr, out.handle, &heuristic.algo, workspace,
                                  WORKSPACE_BYTES, s));
      },
      stream, policy);
  r["status"] = "ok";
  r["time"] = t.to_json();
  r["tflops"] = flops / t.median_s / 1e12;
  return r;
}

int bench(int argc, char** argv) {
  const Args args(argc, argv, {"--shapes", "--dtypes"}, {});
  if (!start(args, TOOL,
             "--out FILE [--quick] [--device N] [--dtypes fp32,tf32,fp16,bf16,fp8] [--shapes FILE]\n"
             "  cuBLASLt GEMMs of transformer layers (or of a shapes file from `odyssey calibrate shapes`)"))
    return 0;
  const int device = args.device();
  const int cc = compute_capability(device);

  std::vector<const DtypeSpec*> wanted;
  for (const std::string& name : args.get_list("--dtypes", "fp32,tf32,fp16,bf16,fp8")) {
    const DtypeSpec* d = find_dtype(name);
    if (!d) throw UsageError("unknown dtype '" + name + "' (expected fp32, tf32, fp16, bf16 or fp8)");
    wanted.push_back(d);
  }

  std::vector<std::pair<GemmCase, const DtypeSpec*>> cases;
  if (args.has("--shapes")) {
    for (const GemmCase& g : read_shapes(args.get("--shapes", "")).gemms) {
      const DtypeSpec* d = find_dtype(g.dtype);
      if (!d) throw UsageError("shapes file: unknown dtype '" + g.dtype + "'");
      cases.emplace_back(g, d);
    }
  } else {
    for (const GemmCase& g : gemm_sweep(args.quick()))
      for (const DtypeSpec* d : wanted) cases.emplace_back(g, d);
  }

  cublasLtHandle_t lt = nullptr;
  ODY_CUBLAS(cublasLtCreate(&lt));
  std::unique_ptr<std::remove_pointer_t<cublasLtHandle_t>, decltype(&cublasLtDestroy)> lt_guard(
      lt, cublasLtDestroy);
  cudaStream_t stream = nullptr;
  ODY_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  void* workspace = nullptr;
  ODY_CUDA(cudaMalloc(&workspace, WORKSPACE_BYTES));

  const TimingPolicy policy = TimingPolicy::for_mode(args.quick());
  std::vector<nlohmann::ordered_json> results;
  std::string skipped;
  for (const auto& [g, d] : cases) {
    if (cc < d->min_cc) {
      if (skipped.find(d->name) == std::string::npos) skipped += (skipped.empty() ? "" : ", ") + d->name;
      continue;
    }
    results.push_back(run_case(lt, g, *d, workspace, stream, policy));
    std::fprintf(stderr, "\r%s: %zu/%zu", TOOL, results.size(), cases.size());
  }
  std::fprintf(stderr, "\n");
  ODY_CUDA(cudaFree(workspace));
  ODY_CUDA(cudaStreamDestroy(stream));

  const std::size_t version = cublasLtGetVersion();
  std::string notes =
      "cuBLASLt heuristic's first algorithm, 32 MiB workspace; fp8 runs as TN with fast accumulation";
  if (!skipped.empty())
    notes += "; not on this GPU (compute capability " + std::to_string(cc) + "): " + skipped;
  write_raw(args.out(), "gemm", provenance(device, TOOL, {{"cublasLt", std::to_string(version)}}, notes),
            policy, results);
  return 0;
}

} // namespace
} // namespace odyssey::bench

int main(int argc, char** argv) {
  return odyssey::bench::run_main("odyssey_bench_gemm", [&] { return odyssey::bench::bench(argc, argv); });
}
