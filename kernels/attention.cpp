// odyssey_bench_attention: fused causal attention, forward and backward, through cuDNN's
// scaled-dot-product-attention graph, built with the cuDNN backend API (cudnnBackend*; no
// cudnn_frontend header on these machines). The graphs are the ones cudnn_frontend 1.x builds for
// its "composite" SDPA node, which cuDNN's runtime-fusion engines run as one flash-attention
// kernel: forward Q K^T -> scale -> causal mask -> softmax (with log-sum-exp statistics) -> P V;
// backward recomputes P from the statistics and produces dQ, dK and dV. A graph cuDNN declines
// (no engine for the shape, dtype or GPU) is recorded as "unsupported" with cuDNN's message.
// Writes a raw result file (kernels/README.md).
#include <cmath>
#include <cstdio>
#include <deque>
#include <string>
#include <vector>

#include <cudnn.h>

#include "kernels/bench_common.hpp"
#include "kernels/shapes.hpp"

// CUDNN_ATTR_OPERATIONGRAPH_HANDLE and CUDNN_ATTR_EXECUTION_PLAN_HANDLE are marked deprecated in
// cuDNN 9 but remain the way to bind a graph and a plan to a handle without the frontend.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace odyssey::bench {
namespace {

constexpr const char* TOOL = "odyssey_bench_attention";

std::string cudnn_message(cudnnStatus_t s) {
  char last[512] = {};
  cudnnGetLastErrorString(last, sizeof last);
  return std::string(cudnnGetErrorString(s)) + (last[0] ? std::string(" (") + last + ")" : "");
}

void check_cudnn(cudnnStatus_t s, const char* call, const char* file, int line) {
  if (s != CUDNN_STATUS_SUCCESS) fail_call("cuDNN", call, file, line, cudnn_message(s));
}
#define ODY_CUDNN(call) check_cudnn((call), #call, __FILE__, __LINE__)

/// cuDNN declined the graph: not a failure of the benchmark, a fact about the GPU and library.
class Unsupported : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Owns one backend descriptor.
class Desc {
public:
  explicit Desc(cudnnBackendDescriptorType_t type) { ODY_CUDNN(cudnnBackendCreateDescriptor(type, &d_)); }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  Desc(Desc&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
  ~Desc() {
    if (d_) cudnnBackendDestroyDescriptor(d_);
  }
  cudnnBackendDescriptor_t get() const { return d_; }

  Desc& set(cudnnBackendAttributeName_t attr, cudnnBackendAttributeType_t type, std::int64_t count,
            const void* value) {
    ODY_CUDNN(cudnnBackendSetAttribute(d_, attr, type, count, value));
    return *this;
  }
  Desc& set_desc(cudnnBackendAttributeName_t attr, const Desc& other) {
    cudnnBackendDescriptor_t o = other.get();
    return set(attr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &o);
  }
  Desc& set_dtype(cudnnBackendAttributeName_t attr, cudnnDataType_t t) {
    return set(attr, CUDNN_TYPE_DATA_TYPE, 1, &t);
  }
  Desc& finalize() {
    ODY_CUDNN(cudnnBackendFinalize(d_));
    return *this;
  }
  /// Finalize where cuDNN may decline (operations and plans): NOT_SUPPORTED-class errors become Unsupported.
  Desc& finalize_or_decline(const char* what) {
    const cudnnStatus_t s = cudnnBackendFinalize(d_);
    if (s == CUDNN_STATUS_SUCCESS) return *this;
    throw Unsupported(std::string(what) + ": " + cudnn_message(s));
  }

private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

using Dims = std::vector<std::int64_t>;

/// Where a tensor's data lives: device memory from the variant pack, only inside the fused
/// kernel, or a host scalar passed by value.
enum class TensorKind { DEVICE, VIRTUAL, BY_VALUE };

/// A graph under construction: tensors, operations and the ids of the tensors it reads and writes.
class Graph {
public:
  /// A tensor; virtual ones live only inside the fused kernel, by-value ones are host scalars.
  const Desc& tensor(std::int64_t uid, cudnnDataType_t type, Dims dims, Dims strides,
                     TensorKind kind = TensorKind::DEVICE) {
    const bool is_virtual = kind == TensorKind::VIRTUAL;
    const bool by_value = kind == TensorKind::BY_VALUE;
    Desc t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const std::int64_t align = 16;
    t.set_dtype(CUDNN_ATTR_TENSOR_DATA_TYPE, type)
        .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, static_cast<std::int64_t>(dims.size()),
             dims.data())
        .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, static_cast<std::int64_t>(strides.size()),
             strides.data())
        .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid)
        .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align)
        .set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
    if (by_value) t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
    t.finalize();
    tensors_.push_back(std::move(t));
    return tensors_.back();
  }
  /// A float virtual tensor with packed strides.
  const Desc& scratch(Dims dims, cudnnDataType_t type = CUDNN_DATA_FLOAT) {
    Dims strides(dims.size(), 1);
    for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * dims[i + 1];
    return tensor(next_virtual_++, type, dims, strides, TensorKind::VIRTUAL);
  }

  void pointwise(cudnnPointwiseMode_t mode, const Desc& x, const Desc* b, const Desc* t, const Desc& y,
                 cudnnDataType_t prec = CUDNN_DATA_FLOAT, std::int64_t axis = -1) {
    Desc pw(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode)
        .set_dtype(CUDNN_ATTR_POINTWISE_MATH_PREC, prec);
    if (axis >= 0) pw.set(CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
    pw.finalize();
    Desc op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw)
        .set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    if (b) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b);
    if (t) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, *t);
    op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y).finalize_or_decline("pointwise operation");
    helpers_.push_back(std::move(pw));
    ops_.push_back(std::move(op));
  }
  void matmul(const Desc& a, const Desc& b, const Desc& c) {
    Desc mm(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    mm.set_dtype(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT).finalize();
    Desc op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_DESC, mm)
        .finalize_or_decline("matmul operation");
    helpers_.push_back(std::move(mm));
    ops_.push_back(std::move(op));
  }
  void reduction(cudnnReduceTensorOp_t mode, const Desc& x, const Desc& y) {
    Desc r(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    r.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode)
        .set_dtype(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT)
        .finalize();
    Desc op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
        .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
        .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_DESC, r)
        .finalize_or_decline("reduction operation");
    helpers_.push_back(std::move(r));
    ops_.push_back(std::move(op));
  }
  /// A view of `x` with other dimensions and strides (the graphs' transposes).
  void reshape(const Desc& x, const Desc& y) {
    Desc op(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x)
        .set_desc(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y)
        .finalize_or_decline("reshape operation");
    ops_.push_back(std::move(op));
  }

  /// The operation graph, heuristics (mode A, then fallback), and the first engine configuration
  /// that finalizes.
  struct Plan {
    Desc plan{CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR};
    std::int64_t workspace = 0;
  };
  Plan build(cudnnHandle_t handle) {
    Desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    std::vector<cudnnBackendDescriptor_t> ops;
    for (const Desc& o : ops_) ops.push_back(o.get());
    graph
        .set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
             static_cast<std::int64_t>(ops.size()), ops.data())
        .set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)
        .finalize_or_decline("operation graph");
    std::string last = "no engine configuration";
    // Heuristics mode A first (cudnn_frontend's default), then the fallback list.
    for (const cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
      heur.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph)
          .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
      if (const cudnnStatus_t s = cudnnBackendFinalize(heur.get()); s != CUDNN_STATUS_SUCCESS) {
        last = "engine heuristics: " + cudnn_message(s);
        continue;
      }
      std::int64_t count = 0;
      ODY_CUDNN(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
      std::vector<Desc> configs;
      std::vector<cudnnBackendDescriptor_t> raw;
      for (std::int64_t i = 0; i < count; ++i) {
        configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
        raw.push_back(configs.back().get());
      }
      std::int64_t returned = 0;
      if (count > 0)
        ODY_CUDNN(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                           CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, raw.data()));
      for (std::int64_t i = 0; i < returned; ++i) {
        Plan p;
        p.plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
        p.plan.set_desc(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, configs[i]);
        if (const cudnnStatus_t s = cudnnBackendFinalize(p.plan.get()); s != CUDNN_STATUS_SUCCESS) {
          last = cudnn_message(s);
          continue;
        }
        std::int64_t got = 0;
        ODY_CUDNN(cudnnBackendGetAttribute(p.plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                           CUDNN_TYPE_INT64, 1, &got, &p.workspace));
        return p;
      }
    }
    throw Unsupported("no engine runs this graph: " + last);
  }

private:
  // Deques: the references handed out stay valid as descriptors are added.
  std::deque<Desc> tensors_;
  std::deque<Desc> helpers_;
  std::deque<Desc> ops_;
  std::int64_t next_virtual_ = 1000;
};

// Tensor ids of the variant packs.
enum Uid : std::int64_t { Q = 1, K, V, O, STATS, SCALE, NEG_INF, DO, DQ, DK, DV, DOT_O };

/// BSHD layout (Megatron-LM and Transformer Engine keep tokens outermost): dims [b, h, s, d].
Dims bshd(std::int64_t h, std::int64_t s, std::int64_t d) {
  return {s * h * d, d, h * d, 1};
}
/// The same memory seen as [b, h, d, s] (a transposed operand).
Dims bshd_t(std::int64_t h, std::int64_t s, std::int64_t d) {
  return {s * h * d, d, 1, h * d};
}

struct Shape {
  std::int64_t b, h, hk, sq, skv, d;
  cudnnDataType_t io;
};

/// Q K^T * scale, causal mask: the masked scores, shared by both passes.
const Desc& masked_scores(Graph& g, const Shape& x, const Desc& q, const Desc& kt, const Desc& scale,
                          const Desc& neg_inf) {
  const Dims sdims{x.b, x.h, x.sq, x.skv};
  const Desc& s = g.scratch(sdims);
  g.matmul(q, kt, s);
  const Desc& scaled = g.scratch(sdims);
  g.pointwise(CUDNN_POINTWISE_MUL, s, &scale, nullptr, scaled);
  // Causal: keep column <= row (top-left aligned, as Megatron-LM's training masks are).
  const Desc& row = g.scratch(sdims, CUDNN_DATA_INT32);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scaled, nullptr, nullptr, row, CUDNN_DATA_INT32, 2);
  const Desc& col = g.scratch(sdims, CUDNN_DATA_INT32);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scaled, nullptr, nullptr, col, CUDNN_DATA_INT32, 3);
  const Desc& keep = g.scratch(sdims, CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, row, &col, nullptr, keep, CUDNN_DATA_INT32);
  const Desc& masked = g.scratch(sdims);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, scaled, &neg_inf, &keep, masked);
  return masked;
}

/// The tensors both passes read: Q, K (as K^T), O, the softmax statistics and the two scalars.
struct Common {
  const Desc& q;
  const Desc& kt;
  const Desc& o;
  const Desc& stats;
  const Desc& scale;
  const Desc& neg_inf;
};

Common common_tensors(Graph& g, const Shape& x) {
  const Dims scalar{1, 1, 1, 1};
  return Common{.q = g.tensor(Q, x.io, {x.b, x.h, x.sq, x.d}, bshd(x.h, x.sq, x.d)),
                .kt = g.tensor(K, x.io, {x.b, x.hk, x.d, x.skv}, bshd_t(x.hk, x.skv, x.d)),
                .o = g.tensor(O, x.io, {x.b, x.h, x.sq, x.d}, bshd(x.h, x.sq, x.d)),
                .stats = g.tensor(STATS, CUDNN_DATA_FLOAT, {x.b, x.h, x.sq, 1}, {x.h * x.sq, x.sq, 1, 1}),
                .scale = g.tensor(SCALE, CUDNN_DATA_FLOAT, scalar, scalar, TensorKind::BY_VALUE),
                .neg_inf = g.tensor(NEG_INF, CUDNN_DATA_FLOAT, scalar, scalar, TensorKind::BY_VALUE)};
}

void forward_graph(Graph& g, const Shape& x) {
  const auto [q, kt, o, stats, scale, neg_inf] = common_tensors(g, x);
  const Desc& v = g.tensor(V, x.io, {x.b, x.hk, x.skv, x.d}, bshd(x.hk, x.skv, x.d));
  const Desc& s = masked_scores(g, x, q, kt, scale, neg_inf);
  const Dims sdims{x.b, x.h, x.sq, x.skv};
  const Dims rows{x.b, x.h, x.sq, 1};
  // Softmax with its log-sum-exp kept for the backward pass.
  const Desc& max = g.scratch(rows);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, s, max);
  const Desc& shifted = g.scratch(sdims);
  g.pointwise(CUDNN_POINTWISE_SUB, s, &max, nullptr, shifted);
  const Desc& e = g.scratch(sdims);
  g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, nullptr, e);
  const Desc& sum = g.scratch(rows);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, sum);
  const Desc& log_sum = g.scratch(rows);
  g.pointwise(CUDNN_POINTWISE_LOG, sum, nullptr, nullptr, log_sum);
  g.pointwise(CUDNN_POINTWISE_ADD, max, &log_sum, nullptr, stats);
  const Desc& p = g.scratch(sdims);
  g.pointwise(CUDNN_POINTWISE_DIV, e, &sum, nullptr, p);
  g.matmul(p, v, o);
}

void backward_graph(Graph& g, const Shape& x) {
  const auto [q, kt, o, stats, scale, neg_inf] = common_tensors(g, x);
  const Desc& vt = g.tensor(V, x.io, {x.b, x.hk, x.d, x.skv}, bshd_t(x.hk, x.skv, x.d));
  const Desc& d_o = g.tensor(DO, x.io, {x.b, x.h, x.sq, x.d}, bshd(x.h, x.sq, x.d));
  const Desc& dq = g.tensor(DQ, x.io, {x.b, x.h, x.sq, x.d}, bshd(x.h, x.sq, x.d));
  const Desc& dk = g.tensor(DK, x.io, {x.b, x.hk, x.skv, x.d}, bshd(x.hk, x.skv, x.d));
  const Desc& dv = g.tensor(DV, x.io, {x.b, x.hk, x.skv, x.d}, bshd(x.hk, x.skv, x.d));
  // The rows' sum of dO * O (FlashAttention-2's D), kept in a workspace tensor as the frontend does.
  const Desc& dot_o = g.tensor(DOT_O, CUDNN_DATA_FLOAT, {x.b, x.h, x.sq, 1}, {x.h * x.sq, x.sq, 1, 1});
  const Dims sdims{x.b, x.h, x.sq, x.skv};
  const Dims tdims{x.b, x.h, x.skv, x.sq};
  const Dims tstrides{x.h * x.sq * x.skv, x.sq * x.skv, 1, x.skv};
  const Dims kv_full{x.b, x.h, x.skv, x.d};

  const Desc& prod = g.scratch({x.b, x.h, x.sq, x.d});
  g.pointwise(CUDNN_POINTWISE_MUL, d_o, &o, nullptr, prod);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, prod, dot_o);

  // Recompute P from the forward statistics.
  const Desc& s = masked_scores(g, x, q, kt, scale, neg_inf);
  const Desc& shifted = g.scratch(sdims);
  g.pointwise(CUDNN_POINTWISE_SUB, s, &stats, nullptr, shifted);
  const Desc& p = g.scratch(sdims);
  g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, nullptr, p);

  // dV = P^T dO (summed over the query heads of each KV head under GQA).
  const Desc& pt = g.tensor(2000, CUDNN_DATA_FLOAT, tdims, tstrides, TensorKind::VIRTUAL);
  g.reshape(p, pt);
  const Desc& dv_full = x.h == x.hk ? dv : g.scratch(kv_full);
  g.matmul(pt, d_o, dv_full);
  if (x.h != x.hk) g.reduction(CUDNN_REDUCE_TENSOR_ADD, dv_full, dv);

  // dS = P * (dO V^T - D) * scale.
  const Desc& dp = g.scratch(sdims);
  g.matmul(d_o, vt, dp);
  const Desc& centred = g.scratch(sdims);
  g.pointwise(CUDNN_POINTWISE_SUB, dp, &dot_o, nullptr, centred);
  const Desc& ds_raw = g.scratch(sdims);
  g.pointwise(CUDNN_POINTWISE_MUL, centred, &p, nullptr, ds_raw);
  const Desc& ds = g.scratch(sdims);
  g.pointwise(CUDNN_POINTWISE_MUL, ds_raw, &scale, nullptr, ds);

  // dQ = dS K; dK = dS^T Q.
  const Desc& k = g.tensor(2001, x.io, {x.b, x.hk, x.skv, x.d}, bshd(x.hk, x.skv, x.d), TensorKind::VIRTUAL);
  g.reshape(kt, k);
  g.matmul(ds, k, dq);
  const Desc& dst = g.tensor(2002, CUDNN_DATA_FLOAT, tdims, tstrides, TensorKind::VIRTUAL);
  g.reshape(ds, dst);
  const Desc& dk_full = x.h == x.hk ? dk : g.scratch(kv_full);
  g.matmul(dst, q, dk_full);
  if (x.h != x.hk) g.reduction(CUDNN_REDUCE_TENSOR_ADD, dk_full, dk);
}

struct DeviceMemory {
  std::vector<void*> ptrs;
  ~DeviceMemory() {
    for (void* p : ptrs) cudaFree(p);
  }
  void* get(std::size_t bytes) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, std::max<std::size_t>(bytes, 16));
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw Unsupported("out of device memory");
    }
    ODY_CUDA(e);
    ptrs.push_back(p);
    return p;
  }
};

nlohmann::ordered_json run_case(cudnnHandle_t handle, const AttentionCase& a, bool backward,
                                cudaStream_t stream, const TimingPolicy& policy) {
  const Shape x{a.batch,
                a.heads,
                a.kv_heads,
                a.seq_q,
                a.seq_kv,
                a.head_dim,
                a.dtype == "fp16" ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16};
  const ElementType fill = a.dtype == "fp16" ? ElementType::FP16 : ElementType::BF16;
  // The workload's FLOP convention (models/workload.cpp): 4 b h s_q s_kv d forward, twice that
  // backward, for the full score matrix; the cost model halves it for causal fused kernels.
  const double fwd_flops =
      4.0 * double(a.batch) * double(a.heads) * double(a.seq_q) * double(a.seq_kv) * double(a.head_dim);
  const double flops = backward ? 2 * fwd_flops : fwd_flops;
  nlohmann::ordered_json r;
  r["name"] = a.name;
  r["pass"] = backward ? "backward" : "forward";
  r["batch"] = a.batch;
  r["heads"] = a.heads;
  r["kv_heads"] = a.kv_heads;
  r["seq_q"] = a.seq_q;
  r["seq_kv"] = a.seq_kv;
  r["head_dim"] = a.head_dim;
  r["causal"] = a.causal;
  r["dtype"] = a.dtype;
  r["flops"] = flops;
  if (!a.causal) {
    r["status"] = "unsupported";
    r["reason"] = "this benchmark builds causal graphs only";
    return r;
  }
  try {
    Graph g;
    if (backward)
      backward_graph(g, x);
    else
      forward_graph(g, x);
    Graph::Plan plan = g.build(handle);

    DeviceMemory mem;
    const std::size_t eb = element_bytes(fill);
    const std::size_t q_count = std::size_t(a.batch) * a.heads * a.seq_q * a.head_dim;
    const std::size_t kv_count = std::size_t(a.batch) * a.kv_heads * a.seq_kv * a.head_dim;
    const std::size_t rows = std::size_t(a.batch) * a.heads * a.seq_q;
    void* q = mem.get(q_count * eb);
    void* k = mem.get(kv_count * eb);
    void* v = mem.get(kv_count * eb);
    void* o = mem.get(q_count * eb);
    void* stats = mem.get(rows * 4);
    void* workspace = mem.get(static_cast<std::size_t>(plan.workspace));
    fill_random(q, q_count, fill, 21, stream);
    fill_random(k, kv_count, fill, 22, stream);
    fill_random(v, kv_count, fill, 23, stream);
    fill_random(o, q_count, fill, 24, stream);
    fill_random(stats, rows, ElementType::FP32, 25, stream);
    float scale = 1.0f / std::sqrt(static_cast<float>(a.head_dim));
    float neg_inf = -INFINITY;
    std::vector<std::int64_t> uids = {Q, K, V, O, STATS, SCALE, NEG_INF};
    std::vector<void*> ptrs = {q, k, v, o, stats, &scale, &neg_inf};
    if (backward) {
      void* d_o = mem.get(q_count * eb);
      fill_random(d_o, q_count, fill, 26, stream);
      uids.insert(uids.end(), {DO, DQ, DK, DV, DOT_O});
      ptrs.insert(ptrs.end(), {d_o, mem.get(q_count * eb), mem.get(kv_count * eb), mem.get(kv_count * eb),
                               mem.get(rows * 4)});
    }
    Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, static_cast<std::int64_t>(uids.size()),
             uids.data())
        .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
             static_cast<std::int64_t>(ptrs.size()), ptrs.data())
        .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace)
        .finalize();
    const Timing t =
        measure([&](cudaStream_t) { ODY_CUDNN(cudnnBackendExecute(handle, plan.plan.get(), pack.get())); },
                stream, policy);
    r["status"] = "ok";
    r["time"] = t.to_json();
    r["tflops"] = 0.5 * flops / t.median_s / 1e12; // causal: the work a fused kernel does
  } catch (const Unsupported& e) {
    r["status"] = std::string(e.what()) == "out of device memory" ? "out_of_memory" : "unsupported";
    r["reason"] = e.what();
  }
  return r;
}

int bench(int argc, char** argv) {
  const Args args(argc, argv, {"--shapes"}, {});
  if (!start(
          args, TOOL,
          "--out FILE [--quick] [--device N] [--shapes FILE]\n"
          "  cuDNN fused causal attention, forward and backward (or the attention cases of a shapes file)"))
    return 0;
  const int device = args.device();
  const std::vector<AttentionCase> cases =
      args.has("--shapes") ? read_shapes(args.get("--shapes", "")).attentions : attention_sweep(args.quick());
  for (const AttentionCase& a : cases)
    if (a.dtype != "fp16" && a.dtype != "bf16")
      throw UsageError("attention case '" + a.name + "': dtype " + a.dtype +
                       " (this benchmark runs fp16 and bf16)");

  cudnnHandle_t handle = nullptr;
  ODY_CUDNN(cudnnCreate(&handle));
  cudaStream_t stream = nullptr;
  ODY_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ODY_CUDNN(cudnnSetStream(handle, stream));
  const TimingPolicy policy = TimingPolicy::for_mode(args.quick());
  std::vector<nlohmann::ordered_json> results;
  for (const AttentionCase& a : cases) {
    for (bool backward : {false, true}) {
      results.push_back(run_case(handle, a, backward, stream, policy));
      std::fprintf(stderr, "\r%s: %zu/%zu", TOOL, results.size(), 2 * cases.size());
    }
  }
  std::fprintf(stderr, "\n");
  ODY_CUDNN(cudnnDestroy(handle));
  ODY_CUDA(cudaStreamDestroy(stream));
  const std::size_t v = cudnnGetVersion();
  const std::string version =
      std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
  write_raw(args.out(), "attention",
            provenance(device, TOOL, {{"cudnn", version}},
                       "cuDNN backend SDPA graphs (composite, causal, BSHD); flops: full score matrix, "
                       "tflops: causal work"),
            policy, results);
  return 0;
}

} // namespace
} // namespace odyssey::bench

int main(int argc, char** argv) {
  return odyssey::bench::run_main("odyssey_bench_attention",
                                  [&] { return odyssey::bench::bench(argc, argv); });
}
