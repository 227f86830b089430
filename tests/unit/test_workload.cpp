#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/unit/shapes.hpp"

#include "models/strategy.hpp"
#include "models/workload.hpp"

using namespace odyssey;

namespace {

/// One row of Megatron-LM Table 1 (Narayanan et al. 2021, arXiv 2104.04473), as recorded in
/// reference/published-runs.yaml; V = 51200, s = 2048, micro-batch not published (1 here).
struct TableOneRow {
  int heads, hidden, layers, tp, pp, dp, global_batch;
};

const std::vector<TableOneRow> TABLE_ONE = {
    {24, 2304, 24, 1, 1, 32, 512},     {32, 3072, 30, 2, 1, 32, 512},     {32, 4096, 36, 4, 1, 32, 512},
    {48, 6144, 40, 8, 1, 32, 1024},    {64, 8192, 48, 8, 2, 32, 1536},    {80, 10240, 60, 8, 4, 32, 1792},
    {96, 12288, 80, 8, 8, 24, 2304},   {128, 16384, 96, 8, 16, 15, 2160}, {128, 20480, 105, 8, 35, 9, 2520},
    {160, 25600, 128, 8, 64, 6, 3072},
};

using test::gpt;

ModelSpec llama(int layers, int hidden, int heads, int kv_heads, int ffn, int vocab = 128256,
                int seq = 8192) {
  ModelSpec m;
  m.name = "llama";
  m.layers = layers;
  m.hidden = hidden;
  m.heads = heads;
  m.kv_heads = kv_heads;
  m.ffn_hidden = ffn;
  m.activation = Activation::SWIGLU;
  m.vocab = vocab;
  m.seq_len = seq;
  return m;
}

Workload table_one_workload(const TableOneRow& r, Recompute recompute) {
  TrainingSpec t{
      .global_batch = r.global_batch, .micro_batch = 1, .precision = Precision::FP16, .tokens = {}};
  ParallelismSpec p;
  p.tp = r.tp;
  p.pp = r.pp;
  p.dp = r.dp;
  p.recompute = recompute;
  return Workload(gpt(r.layers, r.hidden, r.heads), t, p);
}

const ComputeOp& find_op(const WorkBlock& w, const std::string& name) {
  auto it =
      std::find_if(w.compute.begin(), w.compute.end(), [&](const ComputeOp& op) { return op.name == name; });
  REQUIRE(it != w.compute.end());
  return *it;
}

int count_comm(const WorkBlock& w, const std::string& name) {
  return int(
      std::count_if(w.comm.begin(), w.comm.end(), [&](const CollectiveOp& c) { return c.name == name; }));
}

double flops_of(const WorkBlock& w) {
  double f = 0;
  for (const auto& op : w.compute) f += op.flops.value();
  return f;
}

} // namespace

TEST_CASE("models::Workload: FLOPs equal Narayanan eq. 3", "[models]") {
  for (const auto& r : TABLE_ONE) {
    const Workload w = table_one_workload(r, Recompute::FULL);
    const double B = r.global_batch, s = 2048, l = r.layers, h = r.hidden, V = 51200;
    const double eq3 = 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
    const double eq7 = 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h));
    INFO("hidden " << r.hidden);
    CHECK(w.hardware_flops().value() == Approx(eq3).epsilon(1e-9));
    CHECK(w.model_flops().value() == Approx(eq7).epsilon(1e-9));
  }
}

TEST_CASE("models::Workload: selective recompute adds one attention-core forward", "[models]") {
  const auto& r = TABLE_ONE[6];
  const Workload w = table_one_workload(r, Recompute::SELECTIVE);
  const double B = r.global_batch, s = 2048, l = r.layers, h = r.hidden;
  // 4*B*s^2*h per layer (QK^T and AV). Korthikanti eq. 8 writes s/(3h) for s/(6h), i.e. three
  // times this; we count what the hardware re-runs.
  CHECK(w.hardware_flops().value() == Approx(w.model_flops().value() + 4 * B * s * s * h * l).epsilon(1e-9));
  const Workload none = table_one_workload(r, Recompute::NONE);
  CHECK(none.hardware_flops().value() == Approx(none.model_flops().value()).epsilon(1e-12));
}

TEST_CASE("models::Workload: parameters equal Narayanan eq. 2 plus the final LayerNorm", "[models]") {
  for (const auto& r : TABLE_ONE) {
    const Workload w = table_one_workload(r, Recompute::FULL);
    const double l = r.layers, h = r.hidden, V = 51200, s = 2048;
    // Eq. 2 leaves out the final LayerNorm's 2h parameters.
    const double eq2 = 12 * l * h * h * (1 + 13 / (12 * h) + (V + s) / (12 * l * h));
    CHECK(w.parameters() == Approx(eq2 + 2 * h).epsilon(1e-12));
  }
  SECTION("Llama 3 405B: untied head, GQA, SwiGLU, no biases") {
    const Workload w(llama(126, 16384, 128, 8, 53248), TrainingSpec{.global_batch = 2048, .tokens = {}},
                     ParallelismSpec{});
    const double h = 16384, kv = 8 * 128, f = 53248, V = 128256;
    const double layer = h * (h + 2 * kv) + h * h + 3 * h * f + 2 * h;
    CHECK(w.parameters() == Approx(126 * layer + 2 * V * h + h).epsilon(1e-12));
    CHECK(w.parameters() / 1e9 == Approx(405.8).margin(0.1));
  }
}

TEST_CASE("models::Workload: GPT layer ops on one GPU of a TP group", "[models]") {
  const int b = 2, s = 1024, h = 2048, a = 16, t = 4;
  TrainingSpec training{.global_batch = 64, .micro_batch = b, .precision = Precision::BF16, .tokens = {}};
  ParallelismSpec p;
  p.tp = t;
  p.pp = 2;
  p.dp = 2;
  p.recompute = Recompute::FULL;
  const Workload w(gpt(8, h, a, s), training, p);
  const ChunkWork& first = w.chunk(0, 0);
  const ChunkWork& last = w.chunk(1, 0);
  const double bsh_bytes = double(b) * s * h * 2;

  const ComputeOp& qkv = find_op(first.forward, "qkv");
  CHECK(qkv.kind == OpKind::GEMM);
  CHECK(qkv.gemm.m == long(b) * s);
  CHECK(qkv.gemm.n == 3 * h / t);
  CHECK(qkv.gemm.k == h);
  CHECK(qkv.flops.value() == 2.0 * b * s * (3 * h / t) * h);
  const ComputeOp& attn = find_op(first.forward, "attn_core");
  CHECK(attn.kind == OpKind::ATTENTION);
  CHECK(attn.attention.heads == a / t);
  CHECK(attn.attention.kv_heads == a / t);
  CHECK(attn.attention.head_dim == h / a);
  CHECK(attn.flops.value() == 4.0 * b * s * s * h / t);
  CHECK(find_op(first.forward, "attn_out").gemm.k == h / t);
  CHECK(find_op(first.forward, "mlp_up").gemm.n == 4 * h / t);
  CHECK(find_op(first.forward, "layernorm").kind == OpKind::MEMORY_BOUND);
  CHECK(find_op(first.forward, "gelu").bytes.value() == 2.0 * b * s * (4 * h / t) * 2);

  SECTION("TP collectives: 2 all-reduces forward, 2 backward, 2 more re-run by full recomputation") {
    CHECK(count_comm(first.forward, "tp_attn_out") == first.layers);
    CHECK(count_comm(first.forward, "tp_mlp_down") == first.layers);
    CHECK(count_comm(first.backward, "tp_attn_out") == first.layers);
    CHECK(count_comm(first.backward, "tp_qkv_grad") == first.layers);
    CHECK(count_comm(first.backward, "tp_mlp_up_grad") == first.layers);
    for (const auto& c : first.forward.comm)
      if (c.name == "tp_attn_out") CHECK(c.bytes.value() == bsh_bytes);
  }
  SECTION("backward is recompute + dX + dW, split into the two halves") {
    CHECK(flops_of(first.backward) ==
          Approx(flops_of(first.backward_input) + flops_of(first.backward_weight)));
    CHECK(first.backward.comm.size() == first.backward_input.comm.size() + first.backward_weight.comm.size());
    for (const auto& op : first.backward_weight.compute) CHECK(op.pass == Pass::BACKWARD_WEIGHT);
    // The layers' dX + dW GEMM FLOPs are twice their forward GEMM FLOPs.
    const double fwd_layer = 24.0 * b * s * h * h / t + 4.0 * b * s * s * h / t;
    CHECK(flops_of(first.backward) == Approx(first.layers * 3 * fwd_layer));
  }
  SECTION("embedding on the first virtual stage, LM head and loss on the last") {
    CHECK(first.has_embedding);
    CHECK_FALSE(first.has_lm_head);
    CHECK(last.has_lm_head);
    CHECK(last.first_layer == 4);
    CHECK(count_comm(first.forward, "tp_embedding") == 1);
    const ComputeOp& head = find_op(last.forward, "lm_head");
    CHECK(head.gemm.n == 51200 / t);
    CHECK(find_op(last.forward, "cross_entropy").bytes.value() > double(b) * s * 51200 / t * 4);
    CHECK(count_comm(last.forward, "tp_cross_entropy_max") == 1);
  }
  SECTION("stage boundary: scatter to 1/t, then a TP all-gather on the receiving side") {
    CHECK(first.activation_out.value() == bsh_bytes / t);
    CHECK(count_comm(last.forward, "pp_gather") == 1);
    CHECK(count_comm(first.forward, "pp_gather") == 0);
    CHECK(count_comm(first.backward_input, "pp_gather") == 1);
    CHECK(count_comm(last.backward, "pp_gather") == 0);
  }
  SECTION("gradients and optimizer") {
    CHECK(w.microbatches() == 16);
    CHECK(w.gradient_bytes(0).value() == w.local_parameters(0) * 4);
    // Megatron-LM's step: (fp16: unscale,) norm, Adam, fp32 -> 16-bit copy, zeroed gradients.
    const auto& opt = w.optimizer(0);
    std::vector<std::string> names;
    for (const ComputeOp& op : opt) names.push_back(op.name);
    const bool fp16 = w.training().precision == Precision::FP16;
    std::vector<std::string> expected = {"grad_norm", "adam", "main_to_model_copy", "zero_grad"};
    if (fp16) expected.insert(expected.begin(), "grad_unscale");
    CHECK(names == expected);
    const ComputeOp& adam = opt[fp16 ? 2 : 1];
    CHECK(adam.kind == OpKind::OPTIMIZER);
    CHECK(adam.bytes.value() == Approx(w.local_parameters(0) * 28)); // w, m, v, g read; w, m, v written
    CHECK(opt.back().bytes.value() == Approx(w.local_parameters(0) * 4));
  }
}

TEST_CASE("models::Workload: local parameters sum to the model's", "[models]") {
  ParallelismSpec p;
  p.tp = 2;
  p.pp = 1;
  const Workload w(gpt(4, 1024, 16, 512, 51200), TrainingSpec{.global_batch = 8, .tokens = {}}, p);
  // Column- and row-parallel weights split by t; LayerNorms, the out-proj and MLP-down biases
  // and the position embedding are replicated on both ranks.
  const double h = 1024;
  const double replicated = 4 * (4 * h + h + h) + 512 * h + 2 * h;
  CHECK(w.local_parameters(0) * 2 - replicated == Approx(w.parameters()));
  p.pp = 2;
  const Workload tied(gpt(4, 1024, 16, 512, 51200), TrainingSpec{.global_batch = 8, .tokens = {}}, p);
  // The last stage holds a copy of the tied word embedding.
  CHECK(tied.local_parameters(0) + tied.local_parameters(1) == Approx(w.local_parameters(0) + 51200 * h / 2));
}

TEST_CASE("models::Workload: GQA and SwiGLU shapes", "[models]") {
  ParallelismSpec p;
  p.tp = 16;
  p.pp = 2;
  p.dp = 1;
  const Workload w(llama(8, 8192, 64, 8, 28672),
                   TrainingSpec{.global_batch = 4, .precision = Precision::FP8, .tokens = {}}, p);
  const ChunkWork& c = w.chunk(0, 0);
  const ComputeOp& qkv = find_op(c.forward, "qkv");
  // 64/16 = 4 query heads; 8 KV heads over 16 ranks: each rank keeps one.
  CHECK(qkv.gemm.n == (4 + 2 * 1) * 128);
  CHECK(qkv.dtype == Precision::FP8);
  CHECK(find_op(c.forward, "attn_core").attention.kv_heads == 1);
  CHECK(find_op(c.forward, "mlp_gate_up").gemm.n == 2 * 28672 / 16);
  CHECK(find_op(c.forward, "rmsnorm").dtype == Precision::BF16);
  CHECK(find_op(c.forward, "swiglu").kind == OpKind::MEMORY_BOUND);
  CHECK(find_op(w.chunk(1, 0).forward, "lm_head").gemm.n == 129024 / 16); // vocab padded to 128*t
}

TEST_CASE("models::Workload: unfused attention adds the score-matrix ops", "[models]") {
  TrainingSpec t{.global_batch = 8, .micro_batch = 1, .tokens = {}};
  t.flash_attention = false;
  const Workload w(gpt(2, 1024, 16, 2048), t, ParallelismSpec{});
  const ComputeOp& softmax = find_op(w.chunk(0, 0).forward, "scale_mask_softmax");
  CHECK(softmax.bytes.value() == 2.0 * 16 * 2048 * 2048 * 2);
  CHECK(find_op(w.chunk(0, 0).forward, "attn_dropout").bytes.value() == 16.0 * 2048 * 2048 * 5);
  CHECK(w.chunk(0, 0).forward.comm.empty()); // t == 1: no TP collectives
}

TEST_CASE("models::Workload: rejects what it cannot model", "[models]") {
  const TrainingSpec t{.global_batch = 64, .micro_batch = 1, .tokens = {}};
  auto expect = [&](ModelSpec m, TrainingSpec tr, ParallelismSpec p, const std::string& fragment) {
    try {
      Workload w(m, tr, p);
      FAIL("no exception");
    } catch (const std::invalid_argument& e) {
      CHECK_THAT(e.what(), Catch::Contains(fragment));
    }
  };
  ParallelismSpec p;
  SECTION("heads not divisible by tp") {
    p.tp = 3;
    expect(gpt(4, 1536, 16), t, p, "heads (16) must be divisible by tp (3)");
  }
  SECTION("layers not divisible by pp * virtual stages") {
    p.pp = 2;
    p.virtual_stages = 3;
    p.schedule = PipelineScheduleKind::INTERLEAVED_1F1B;
    expect(gpt(4, 1024, 16), t, p, "layers per stage (4 / pp 2 = 2) must be divisible by virtual_stages (3)");
  }
  SECTION("batch not divisible by micro-batch * dp") {
    p.dp = 3;
    expect(gpt(4, 1024, 16), t, p, "global_batch (64) must be divisible by micro_batch x dp (1 x 3 = 3)");
  }
  SECTION("interleaving with micro-batches not divisible by pp") {
    p.pp = 3;
    p.dp = 2;
    p.virtual_stages = 2;
    p.schedule = PipelineScheduleKind::INTERLEAVED_1F1B;
    expect(gpt(6, 1024, 16), t, p, "(global_batch / (micro_batch x dp) = 32) to be a multiple of pp (3)");
  }
  SECTION("zero bubble with virtual stages") {
    p.pp = 2;
    p.virtual_stages = 2;
    p.schedule = PipelineScheduleKind::ZERO_BUBBLE;
    expect(gpt(4, 1024, 16), t, p, "virtual_stages must be 1, got 2");
  }
  SECTION("kv heads that do not divide heads") {
    ModelSpec m = gpt(4, 1024, 16);
    m.kv_heads = 3;
    expect(m, t, p, "heads (16) must be divisible by kv_heads (3)");
  }
  SECTION("sequence parallelism with seq_len not divisible by tp") {
    p.tp = 8;
    p.sequence_parallel = true;
    expect(gpt(4, 1024, 16, 1020), t, p, "sequence_parallel needs seq_len (1020) divisible by tp (8)");
  }
  SECTION("context parallelism with a sequence not divisible by 2 * cp") {
    p.cp = 4;
    expect(gpt(4, 1024, 16, 1020), t, p, "seq_len (1020) must be divisible by 2 x cp (2 x 4 = 8)");
  }
  SECTION("expert parallelism") {
    p.ep = 2;
    p.dp = 2;
    expect(gpt(4, 1024, 16), t, p, "expert parallelism (ep 2) needs a mixture-of-experts model");
    ModelSpec m = gpt(4, 1024, 16);
    m.moe = MoeSpec{.experts = 6, .top_k = 2};
    p.ep = 4;
    p.dp = 4;
    expect(m, t, p, "moe.experts (6) must be divisible by ep (4)");
    m.moe->experts = 8;
    p.dp = 2;
    expect(m, t, p, "ep (4) must divide dp (2)");
  }
  SECTION("uneven stages") {
    p.pp = 4;
    p.first_stage_layers = 2;
    p.last_stage_layers = 2;
    expect(gpt(9, 1024, 16), t, p, "(9 - 2 - 2 = 5) must be divisible by the 2 other stages");
    p.virtual_stages = 4;
    p.schedule = PipelineScheduleKind::INTERLEAVED_1F1B;
    p.first_stage_layers = 2;
    expect(gpt(12, 1024, 16), t, p, "(virtual_stages - 1) x layers per chunk (3 x 1 = 3)");
  }
}

namespace {

const CollectiveOp* find_comm(const WorkBlock& w, const std::string& name) {
  auto it = std::find_if(w.comm.begin(), w.comm.end(), [&](const CollectiveOp& c) { return c.name == name; });
  return it == w.comm.end() ? nullptr : &*it;
}

double gemm_flops_of(const WorkBlock& w) {
  double f = 0;
  for (const auto& op : w.compute)
    if (op.kind == OpKind::GEMM || op.kind == OpKind::ATTENTION) f += op.flops.value();
  return f;
}

/// Mixtral 8x7B (Jiang et al. 2024, arXiv 2401.04088 Table 1): 32 layers, hidden 4096, 32 heads,
/// 8 KV heads, FFN 14336, 8 experts, top-2, vocab 32000.
ModelSpec mixtral() {
  ModelSpec m = llama(32, 4096, 32, 8, 14336, 32000, 4096);
  m.name = "mixtral-8x7b";
  m.moe = MoeSpec{.experts = 8, .top_k = 2, .capacity_factor = 1.0, .expert_ffn_hidden = 0, .every = 1};
  return m;
}

} // namespace

TEST_CASE("models::Workload: ZeRO-3 gathers each chunk's parameters before forward and backward",
          "[models]") {
  const TrainingSpec t{.global_batch = 64, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}};
  ParallelismSpec p;
  p.tp = 2;
  p.pp = 2;
  p.dp = 4;
  p.zero = 3;
  p.zero3_unit = Zero3Unit::LAYER;
  for (bool overlap : {true, false}) {
    p.zero_overlap = overlap;
    const Workload w(gpt(4, 1024, 16), t, p);
    for (int stage = 0; stage < 2; ++stage) {
      const ChunkWork& c = w.chunk(stage, 0);
      // bf16 weights (2 bytes) gathered; ChunkWork::parameters is in fp32 gradients (4 bytes).
      const double gathered = c.parameters.value() / 2;
      for (const WorkBlock* block : {&c.forward, &c.backward, &c.backward_input}) {
        // One all-gather per layer (2 layers a stage): the first blocking, the next one prefetched
        // under the compute when overlapping.
        REQUIRE(block->comm.size() >= 1);
        double bytes = 0;
        int gathers = 0;
        for (const CollectiveOp& g : block->comm) {
          if (g.kind != CollectiveKind::ALL_GATHER || g.group != GroupKind::DP) continue;
          CHECK(g.bytes.value() == Approx(gathered / 2));
          bytes += g.bytes.value() * g.count;
          gathers += g.count;
        }
        CHECK(bytes == Approx(gathered));
        CHECK(gathers == 2);
        CHECK(block->comm.front().overlap_with_compute == false);
        CHECK(block->comm.size() >= (overlap ? 2U : 1U));
        if (overlap) CHECK(block->comm[1].overlap_with_compute);
      }
      CHECK(w.parameter_bytes(stage).value() == Approx(w.local_parameters(stage) * 2));
    }
  }
  p.zero = 2;
  const Workload w(gpt(4, 1024, 16), t, p);
  CHECK(find_comm(w.chunk(0, 0).forward, "zero3_param_gather") == nullptr);
  CHECK(w.optimizer(0)[1].flops.value() == Approx(12 * w.local_parameters(0) / 4));
}

TEST_CASE("models::Workload: uneven pipeline stages (Llama 3 405B: 126 layers on pp 16)", "[models]") {
  const TrainingSpec t{.global_batch = 64, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}};
  ParallelismSpec p;
  p.tp = 8;
  p.pp = 16;
  p.first_stage_layers = 7;
  p.last_stage_layers = 7;
  const Workload w(llama(126, 16384, 128, 8, 53248), t, p);
  int next = 0;
  for (int s = 0; s < 16; ++s) {
    const ChunkWork& c = w.chunk(s, 0);
    CHECK(c.layers == (s == 0 || s == 15 ? 7 : 8));
    CHECK(c.first_layer == next);
    next += c.layers;
  }
  CHECK(next == 126);
  double sum = 0;
  for (int s = 0; s < 16; ++s) sum += w.local_parameters(s) * 8;
  CHECK(sum == Approx(w.parameters()).epsilon(1e-3)); // replicated norm gains counted on every TP rank
  CHECK(w.chunk_activations(1, 0).value() == Approx(8 * w.layer_activations().value()));
  SECTION("interleaved (v = 8): only the first and the last model chunk are shortened") {
    p.virtual_stages = 8;
    p.schedule = PipelineScheduleKind::INTERLEAVED_1F1B;
    const Workload v(
        llama(126, 16384, 128, 8, 53248),
        TrainingSpec{.global_batch = 64, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}}, p);
    CHECK(v.chunk(0, 0).layers == 0);
    CHECK(v.chunk(0, 0).has_embedding);
    CHECK(v.chunk(15, 7).layers == 0);
    CHECK(v.chunk(15, 7).has_lm_head);
    int total = 0;
    for (int s = 0; s < 16; ++s) {
      int stage = 0;
      for (int c = 0; c < 8; ++c) stage += v.chunk(s, c).layers;
      CHECK(stage == (s == 0 || s == 15 ? 7 : 8));
      total += stage;
    }
    CHECK(total == 126);
    CHECK(v.chunk(1, 0).first_layer == 0);
    CHECK(v.chunk(0, 1).first_layer == 15);
  }
}

TEST_CASE("models::Workload: context parallelism splits the sequence", "[models]") {
  const TrainingSpec t{.global_batch = 16, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}};
  ParallelismSpec p;
  p.tp = 8;
  p.pp = 2;
  p.dp = 2;
  const ModelSpec m = llama(8, 8192, 64, 8, 28672, 128256, 8192);
  const Workload base(m, t, p);
  p.cp = 4;
  const Workload cp(m, t, p);
  SECTION("per-rank FLOPs times cp are the job's") {
    CHECK(cp.hardware_flops().value() == Approx(base.hardware_flops().value()).epsilon(1e-12));
    CHECK(cp.model_flops().value() == base.model_flops().value());
    for (int s = 0; s < 2; ++s) {
      CHECK(4 * gemm_flops_of(cp.chunk(s, 0).forward) == Approx(gemm_flops_of(base.chunk(s, 0).forward)));
      CHECK(4 * gemm_flops_of(cp.chunk(s, 0).backward) == Approx(gemm_flops_of(base.chunk(s, 0).backward)));
    }
    const ComputeOp& core = find_op(cp.chunk(0, 0).forward, "attn_core");
    CHECK(core.attention.seq_q == 8192 / 4);
    CHECK(core.attention.seq_kv == 8192);
  }
  SECTION("activations, TP collectives and the stage boundary scale by 1/cp") {
    CHECK(cp.layer_activations().value() == Approx(base.layer_activations().value() / 4));
    CHECK(cp.chunk_activations(1, 0).value() == Approx(base.chunk_activations(1, 0).value() / 4));
    CHECK(cp.chunk(0, 0).activation_out.value() == Approx(base.chunk(0, 0).activation_out.value() / 4));
    CHECK(find_comm(cp.chunk(1, 0).forward, "tp_attn_out")->bytes.value() ==
          Approx(find_comm(base.chunk(1, 0).forward, "tp_attn_out")->bytes.value() / 4));
  }
  SECTION("ring attention passes the sequence's K/V, overlapped") {
    // b * s * 2 * (kv_heads / t) * head_dim * 2 bytes: one KV head of 128 per TP rank.
    const double kv = 1.0 * 8192 * 2 * 1 * 128 * 2;
    const WorkBlock& f = cp.chunk(1, 0).forward;
    const WorkBlock& b = cp.chunk(1, 0).backward;
    CHECK(count_comm(f, "cp_kv_ring") == 4);
    REQUIRE(find_comm(f, "cp_kv_ring") != nullptr);
    CHECK(find_comm(f, "cp_kv_ring")->bytes.value() == kv);
    CHECK(find_comm(f, "cp_kv_ring")->group == GroupKind::CP);
    CHECK(find_comm(f, "cp_kv_ring")->overlap_with_compute);
    CHECK(count_comm(b, "cp_kv_ring_bwd") == 4);
    REQUIRE(find_comm(b, "cp_dkv_ring") != nullptr);
    CHECK(find_comm(b, "cp_dkv_ring")->kind == CollectiveKind::REDUCE_SCATTER);
    CHECK(find_comm(b, "cp_dkv_ring")->bytes.value() == kv);
    CHECK(find_comm(b, "cp_dkv_ring")->overlap_with_compute);
  }
  SECTION("the all-gather variant (Llama 3) blocks") {
    p.cp_kind = ContextParallelKind::ALL_GATHER;
    const Workload ag(m, t, p);
    const CollectiveOp* g = find_comm(ag.chunk(1, 0).forward, "cp_kv_gather");
    REQUIRE(g != nullptr);
    CHECK(g->kind == CollectiveKind::ALL_GATHER);
    CHECK_FALSE(g->overlap_with_compute);
    const CollectiveOp* rs = find_comm(ag.chunk(1, 0).backward, "cp_dkv_scatter");
    REQUIRE(rs != nullptr);
    CHECK(rs->kind == CollectiveKind::REDUCE_SCATTER);
    CHECK_FALSE(rs->overlap_with_compute);
    CHECK(count_comm(ag.chunk(1, 0).backward, "cp_kv_ring_bwd") == 0);
    const CollectiveOp* again = find_comm(ag.chunk(1, 0).backward, "cp_kv_gather_bwd");
    REQUIRE(again != nullptr);
    CHECK(again->kind == CollectiveKind::ALL_GATHER);
    CHECK(again->bytes.value() == g->bytes.value());
    CHECK_FALSE(again->overlap_with_compute);
  }
}

TEST_CASE("models::Workload: Mixtral 8x7B parameters and expert parallelism", "[models]") {
  const TrainingSpec t{.global_batch = 64, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}};
  ParallelismSpec p;
  p.tp = 1;
  p.pp = 1;
  p.dp = 8;
  p.ep = 8;
  const Workload w(mixtral(), t, p);
  SECTION("46.7B parameters, 12.9B active per token (Jiang et al. 2024 sec. 2)") {
    CHECK(w.parameters() == Approx(46.7e9).epsilon(0.005));
    CHECK(w.active_parameters() == Approx(12.9e9).epsilon(0.01));
    CHECK(w.moe_layers() == 32);
  }
  SECTION("two all-to-alls forward and two backward per MoE layer, of the routed tokens") {
    // b * s * top_k * capacity_factor * h * 2 bytes (nccl-tests: the whole send buffer).
    const double bytes = 1.0 * 4096 * 2 * 1.0 * 4096 * 2;
    const ChunkWork& c = w.chunk(0, 0);
    CHECK(count_comm(c.forward, "moe_dispatch") == 32);
    CHECK(count_comm(c.forward, "moe_combine") == 32);
    CHECK(count_comm(c.backward_input, "moe_combine_grad") == 32);
    CHECK(count_comm(c.backward_input, "moe_dispatch_grad") == 32);
    const CollectiveOp* a2a = find_comm(c.forward, "moe_dispatch");
    CHECK(a2a->kind == CollectiveKind::ALL_TO_ALL);
    CHECK(a2a->group == GroupKind::EP);
    CHECK(a2a->bytes.value() == bytes);
    // One local expert (8 / ep 8) computes the ep ranks' tokens routed to it.
    const ComputeOp& up = find_op(c.forward, "expert_gate_up");
    CHECK(up.gemm.batch == 1);
    CHECK(up.gemm.m == 4096 * 2);
  }
  SECTION("expert gradients are kept apart from the dense ones") {
    const double expert = 32 * 3.0 * 4096 * 14336; // one local expert per layer
    CHECK(w.expert_gradient_bytes(0).value() == Approx(expert * 4));
    CHECK(w.gradient_bytes(0).value() + w.expert_gradient_bytes(0).value() ==
          Approx(w.local_parameters(0) * 4));
    CHECK(w.chunk(0, 0).expert_parameters.value() == w.expert_gradient_bytes(0).value());
  }
  SECTION("model FLOPs count active parameters; hardware FLOPs equal them at capacity 1") {
    CHECK(w.hardware_flops().value() == Approx(w.model_flops().value()).epsilon(1e-9));
    ModelSpec m = mixtral();
    m.moe->capacity_factor = 1.25;
    const Workload padded(m, t, p);
    CHECK(padded.model_flops().value() == w.model_flops().value());
    CHECK(padded.hardware_flops().value() > w.hardware_flops().value());
  }
  SECTION("memory: local experts only, expert states sharded over expert-data-parallel ranks") {
    p.ep = 2;
    p.zero = 1;
    const Workload w2(mixtral(), t, p);
    CHECK(w2.expert_zero_shards() == 4);
    const double experts = w2.expert_gradient_bytes(0).value() / 4;
    const double dense = w2.local_parameters(0) - experts;
    CHECK(experts == Approx(32 * 4 * 3.0 * 4096 * 14336));
    CHECK(w2.memory(0).optimizer_states.value() == Approx(12 * dense / 8 + 12 * experts / 4));
    CHECK(w2.moe_layer_activations() > w2.layer_activations());
  }
  SECTION("context-parallel ranks hold the same experts: the expert-data-parallel group spans dp*cp/ep") {
    p.ep = 2;
    p.cp = 2;
    CHECK(Workload(mixtral(), t, p).expert_zero_shards() == 8);
  }
  SECTION("ZeRO-3 shards expert weights too and gathers them over the expert-data-parallel group") {
    p.ep = 2;
    p.zero = 3;
    p.zero_overlap = false;
    const Workload w3(mixtral(), t, p);
    const ChunkWork& c = w3.chunk(0, 0);
    const double experts = c.expert_parameters.value() / 4; // gradient bytes (fp32) -> elements
    const double dense = c.parameters.value() / 4;
    const CollectiveOp* gather = find_comm(c.forward, "zero3_expert_gather");
    REQUIRE(gather != nullptr);
    CHECK(gather->group == GroupKind::EXPERT_DP);
    CHECK(gather->kind == CollectiveKind::ALL_GATHER);
    // Without prefetch, one op of `count` bucket gathers carries the chunk's bf16 weights.
    CHECK(gather->bytes.value() * gather->count == Approx(2 * experts));
    REQUIRE(find_comm(c.backward, "zero3_expert_gather_bwd") != nullptr);
    const CollectiveOp* again = find_comm(c.backward, "zero3_expert_gather_bwd");
    CHECK(again->bytes.value() * again->count == Approx(2 * experts));
    REQUIRE(find_comm(c.forward, "zero3_param_gather") != nullptr);
    const CollectiveOp* dense_gather = find_comm(c.forward, "zero3_param_gather");
    CHECK(dense_gather->bytes.value() * dense_gather->count == Approx(2 * dense));
    // bf16 weights: each shard plus one gathered bucket of each (zero3_gathers), not the chunk.
    const double live =
        zero3_gathers(p, dense, c.layers).live_elements + zero3_gathers(p, experts, c.layers).live_elements;
    CHECK(live == Approx(dense / dense_gather->count + experts / gather->count));
    CHECK(w3.memory(0).weights.value() == Approx(2 * dense / 8 + 2 * experts / 4 + 2 * live));
  }
}

TEST_CASE(
    "models::Workload: FP8 adds Transformer Engine casts, weights cast once per iteration, FLOPs unchanged",
    "[models]") {
  TrainingSpec t{.global_batch = 64, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}};
  ParallelismSpec p;
  p.tp = 2;
  auto casts = [](const WorkBlock& w) {
    return int(std::count_if(w.compute.begin(), w.compute.end(),
                             [](const ComputeOp& op) { return op.name.rfind("fp8_cast_", 0) == 0; }));
  };
  const Workload bf16(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  t.precision = Precision::FP8;
  const Workload fp8(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  const ChunkWork& c = fp8.chunk(0, 0);
  CHECK(casts(bf16.chunk(0, 0).forward) == 0);
  CHECK(casts(bf16.chunk(0, 0).backward) == 0);
  // Forward: the input of qkv, attn_out, mlp_gate_up, mlp_down per layer, plus the LM head's.
  CHECK(casts(c.forward) == 4 * 2 + 1);
  CHECK(casts(c.backward) == 4 * 2 + 1);
  // The weights: cast once per iteration (micro-batch 0), cached with their transpose.
  CHECK(casts(c.weight_casts) == 4 * 2 + 1);
  CHECK(bf16.chunk(0, 0).weight_casts.compute.empty());
  // Backward: the incoming gradient of each dX GEMM; dW reuses the forward's FP8 input.
  CHECK(casts(c.backward_input) == 4 * 2 + 1);
  CHECK(casts(c.backward_weight) == 0);
  const ComputeOp& cast = find_op(c.weight_casts, "fp8_cast_qkv_weight");
  CHECK(cast.kind == OpKind::MEMORY_BOUND);
  CHECK(cast.flops.value() == 0);
  // Read the bf16 weight (2 B), write the FP8 copy and its transpose (1 B each), plus the amax.
  CHECK(cast.bytes.value() == Approx(1024.0 * (1024 / 2 + 2 * 256 / 2) * 4 + 4));
  // Memory: the cached copy and transpose of every FP8 GEMM weight, 2 bytes per element.
  const double per_layer = 1024.0 * 768 + 512.0 * 1024 + 1024.0 * 2 * 1408 + 1408.0 * 1024;
  const double elements = 2 * per_layer + 1024.0 * 16000;
  CHECK(fp8.fp8_weight_cache_bytes(0).value() == Approx(2 * elements));
  CHECK(bf16.fp8_weight_cache_bytes(0).value() == 0);
  CHECK(fp8.memory(0).weights.value() - bf16.memory(0).weights.value() == Approx(2 * elements));
  CHECK(fp8.hardware_flops().value() == bf16.hardware_flops().value());
  CHECK(fp8.model_flops().value() == bf16.model_flops().value());
}

TEST_CASE("models::Workload: FP8 current scaling reads each tensor once more before its cast", "[models]") {
  TrainingSpec t{.global_batch = 64, .micro_batch = 1, .precision = Precision::FP8, .tokens = {}};
  ParallelismSpec p;
  p.tp = 2;
  const Workload delayed(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  t.fp8_recipe = Fp8Recipe::CURRENT;
  const Workload current(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  // The qkv input: 2048 tokens x 1024, read (2 B) and written in FP8 with its transpose (1 B
  // each, the transpose for the dW GEMM); current scaling reads it once more for its amax.
  const double input = 2048.0 * 1024;
  CHECK(find_op(delayed.chunk(0, 0).forward, "fp8_cast_qkv").bytes.value() == Approx(input * 4 + 4));
  CHECK(find_op(current.chunk(0, 0).forward, "fp8_cast_qkv").bytes.value() == Approx(input * 6 + 4));
  // The weights too, once per iteration.
  const double weight = 1024.0 * (1024 / 2 + 2 * 256 / 2);
  CHECK(find_op(current.chunk(0, 0).weight_casts, "fp8_cast_qkv_weight").bytes.value() ==
        Approx(weight * (4 + 2) + 4));
  CHECK(current.hardware_flops().value() == delayed.hardware_flops().value());
}

TEST_CASE("models::Workload: FP8 primary weights are held and gathered in one byte", "[models]") {
  TrainingSpec t{.global_batch = 64, .micro_batch = 1, .precision = Precision::FP8, .tokens = {}};
  ParallelismSpec p;
  p.tp = 2;
  p.dp = 4;
  p.zero = 1;
  const Workload bf16_weights(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  t.fp8_param_gather = true;
  const Workload fp8_weights(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  CHECK(weight_element_bytes(t) == 1.0);
  const double params = fp8_weights.local_parameters(0);
  // The parameter all-gather of the distributed optimizer moves one byte per parameter.
  CHECK(fp8_weights.parameter_bytes(0).value() == Approx(params));
  CHECK(bf16_weights.parameter_bytes(0).value() == Approx(2 * params));
  // Memory: one byte per weight and the cached transpose of the FP8 GEMMs' weights, instead of two
  // bytes, the FP8 copy and the transpose.
  const double gemm_weights = fp8_weights.fp8_weight_cache_bytes(0).value();
  CHECK(bf16_weights.fp8_weight_cache_bytes(0).value() == Approx(2 * gemm_weights));
  CHECK(fp8_weights.memory(0).weights.value() == Approx(params + gemm_weights));
  CHECK(bf16_weights.memory(0).weights.value() == Approx(2 * params + 2 * gemm_weights));
  // The per-iteration weight cast only writes the transpose of the FP8 weight.
  const double weight = 1024.0 * (1024 / 2 + 2 * 256 / 2);
  CHECK(find_op(fp8_weights.chunk(0, 0).weight_casts, "fp8_cast_qkv_weight").bytes.value() ==
        Approx(weight * 2));
  // Only FP8 training holds FP8 weights.
  t.precision = Precision::BF16;
  CHECK(check_strategy(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p, std::nullopt)->key ==
        "training.fp8_param_gather");
}

TEST_CASE("models::Workload: without gradient accumulation fusion each dW GEMM is followed by an add",
          "[models]") {
  TrainingSpec t{.global_batch = 64, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}};
  ParallelismSpec p;
  p.tp = 2;
  const Workload fused(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  t.gradient_accumulation_fusion = false;
  const Workload unfused(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  auto adds = [](const WorkBlock& w) {
    return int(std::count_if(w.compute.begin(), w.compute.end(),
                             [](const ComputeOp& op) { return op.name.rfind("grad_accum_", 0) == 0; }));
  };
  CHECK(adds(fused.chunk(0, 0).backward) == 0);
  // qkv, attn_out, mlp_gate_up, mlp_down per layer, plus the LM head.
  CHECK(adds(unfused.chunk(0, 0).backward_weight) == 4 * 2 + 1);
  CHECK(adds(unfused.chunk(0, 0).backward) == 4 * 2 + 1);
  CHECK(adds(unfused.chunk(0, 0).forward) == 0);
  const double elements = 1024.0 * 768; // qkv weight on one of 2 TP ranks
  const ComputeOp& add = find_op(unfused.chunk(0, 0).backward_weight, "grad_accum_qkv_wgrad");
  // main_grad += grad: read the bf16 gradient (2 B), read and write the fp32 main gradient (4 B each).
  CHECK(add.bytes.value() == Approx(elements * (2 + 4 + 4)));
  // The GEMM writes its 2-byte gradient instead of read-modify-writing the 4-byte main gradient.
  const double gemm_fused = find_op(fused.chunk(0, 0).backward_weight, "qkv_wgrad").bytes.value();
  const double gemm_unfused = find_op(unfused.chunk(0, 0).backward_weight, "qkv_wgrad").bytes.value();
  CHECK(gemm_fused - gemm_unfused == Approx(elements * (8 - 2)));
  CHECK(unfused.hardware_flops().value() == fused.hardware_flops().value());
}

TEST_CASE("models::Workload: the framework's own pass over each unfused weight gradient", "[models]") {
  // Megatron-LM: main_grad += grad (read 2 and 4, write 4).
  CHECK(unfused_gradient_pass(Framework::MEGATRON_LM, 2, 4).bytes_per_element == 2 + 2 * 4);
  // DeepSpeed's BF16 optimizer: an fp32 copy of the bf16 gradient (read 2, write 4), then the add
  // reads it and the main gradient and writes the main gradient.
  CHECK(unfused_gradient_pass(Framework::DEEPSPEED, 2, 4).bytes_per_element == 2 + 4 + 3 * 4);
  // FSDP mixed precision DEFAULT: bf16 gradient cast to fp32 (read 2, write 4), divided by the
  // pre-division factor (read and write 4); PURE (bf16 reduction): the division alone.
  CHECK(unfused_gradient_pass(Framework::PYTORCH_FSDP, 2, 4).bytes_per_element == 2 + 4 + 2 * 4);
  CHECK(unfused_gradient_pass(Framework::PYTORCH_FSDP, 2, 2).bytes_per_element == 2 * 2);

  TrainingSpec t{.global_batch = 64, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}};
  t.gradient_accumulation_fusion = false;
  t.framework = Framework::PYTORCH_FSDP;
  ParallelismSpec p;
  p.dp = 8;
  p.zero = 3;
  p.zero3_unit = Zero3Unit::LAYER;
  const Workload fsdp(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  const double elements = 1024.0 * 1536; // the qkv weight: q 1024 and k, v 256 each
  const ComputeOp& pass = find_op(fsdp.chunk(0, 0).backward_weight, "fsdp_grad_cast_divide_qkv_wgrad");
  CHECK(pass.bytes.value() == Approx(elements * 14));
  // With fusion on, the framework has nothing to add.
  t.gradient_accumulation_fusion = true;
  const Workload fused(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  CHECK(std::none_of(fused.chunk(0, 0).backward.compute.begin(), fused.chunk(0, 0).backward.compute.end(),
                     [](const ComputeOp& op) { return op.name.rfind("fsdp_", 0) == 0; }));
}

TEST_CASE("models::Workload: bf16 main gradients halve the gradient memory, buckets and reductions",
          "[models]") {
  TrainingSpec t{.global_batch = 64, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}};
  ParallelismSpec p;
  p.dp = 4;
  p.zero = 1;
  const Workload fp32(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  t.grad_reduce_dtype = Precision::BF16;
  const Workload bf16(llama(2, 1024, 16, 4, 2816, 32000, 2048), t, p);
  CHECK(gradient_element_bytes(t) == 2.0);
  CHECK(fp32.memory(0).gradients.value() == Approx(2 * bf16.memory(0).gradients.value()));
  CHECK(fp32.memory(0).weights.value() == bf16.memory(0).weights.value());
  CHECK(fp32.memory(0).optimizer_states.value() == bf16.memory(0).optimizer_states.value());
  CHECK(fp32.gradient_bytes(0).value() == Approx(2 * bf16.gradient_bytes(0).value()));
  CHECK(fp32.dp_bucket_bytes().value() == Approx(2 * bf16.dp_bucket_bytes().value()));
  // The fused weight-gradient GEMM read-modify-writes a 2-byte main gradient, not a 4-byte one.
  const double elements = 1024.0 * 1536; // qkv weight: 1024 x (1024 + 2 x 256)
  CHECK(find_op(fp32.chunk(0, 0).backward_weight, "qkv_wgrad").bytes.value() -
            find_op(bf16.chunk(0, 0).backward_weight, "qkv_wgrad").bytes.value() ==
        Approx(elements * (8 - 4)));
}

TEST_CASE("models::Workload: dropout kernels and masks only when the model trains with dropout", "[models]") {
  TrainingSpec t{.global_batch = 64, .micro_batch = 1, .precision = Precision::FP16, .tokens = {}};
  t.flash_attention = false;
  ParallelismSpec p;
  p.tp = 2;
  ModelSpec m = gpt(2, 1024, 16, 2048);
  REQUIRE(dropout_probability(m) == 0.1); // GPT default: Megatron-LM's
  const Workload with(m, t, p);
  m.dropout = 0.0;
  const Workload without(m, t, p);
  auto dropouts = [](const WorkBlock& w) {
    return int(std::count_if(w.compute.begin(), w.compute.end(), [](const ComputeOp& op) {
      return op.name.find("dropout") != std::string::npos;
    }));
  };
  // Per layer: attention dropout and two bias-dropout-adds; the embedding dropout on stage 0.
  CHECK(dropouts(with.chunk(0, 0).forward) == 2 * 3 + 1);
  CHECK(dropouts(with.chunk(0, 0).backward) == 2 * 3 + 1);
  CHECK(dropouts(without.chunk(0, 0).forward) == 0);
  CHECK(dropouts(without.chunk(0, 0).backward) == 0);
  // Masks: 2*s*b*h per layer plus the attention's a/t*s^2*b, and the embedding's s*b*h.
  const double s = 2048, h = 1024, a_t = 8;
  CHECK(with.layer_activations().value() - without.layer_activations().value() ==
        Approx(2 * s * h + a_t * s * s * (1 + 2)));
  CHECK(with.chunk_activations(0, 0).value() - without.chunk_activations(0, 0).value() ==
        Approx(2 * (2 * s * h + a_t * s * s * 3) + s * h));
  SECTION("Llama-style models default to no dropout") {
    CHECK(dropout_probability(llama(2, 1024, 16, 4, 2816)) == 0.0);
  }
}

TEST_CASE("models::Workload: userbuffers TP overlap splits the GEMMs beside its collectives", "[models]") {
  const int b = 2, s = 1024, h = 2048, a = 16, t = 8;
  const TrainingSpec training{
      .global_batch = 16, .micro_batch = b, .precision = Precision::BF16, .tokens = {}};
  ParallelismSpec p;
  p.tp = t;
  p.sequence_parallel = true;
  const Workload whole(gpt(2, h, a, s), training, p);
  p.tp_overlap = true;
  const Workload split(gpt(2, h, a, s), training, p);
  const long tokens = long(b) * s;
  // Transformer Engine's defaults: ring exchange in tp chunks, pipeline in 4, bulk whole.
  for (const auto& [name, chunks] : std::vector<std::pair<std::string, long>>{
           {"qkv", t}, {"mlp_up", t}, {"attn_out", 4}, {"mlp_down", 4}}) {
    const ComputeOp& a_op = find_op(whole.chunk(0, 0).forward, name);
    const ComputeOp& b_op = find_op(split.chunk(0, 0).forward, name);
    INFO(name);
    CHECK(a_op.gemm.m == tokens);
    CHECK(b_op.gemm.m == tokens / chunks);
    CHECK(b_op.kernels == a_op.kernels * chunks);
    CHECK(b_op.flops.value() == a_op.flops.value()); // the same work, in smaller GEMMs
  }
  CHECK(find_op(split.chunk(0, 0).backward_input, "attn_out_dgrad").gemm.m == tokens / t);
  CHECK(find_op(split.chunk(0, 0).backward_input, "qkv_dgrad").gemm.m == tokens); // bulk
}

TEST_CASE("models::Workload: sequence parallelism gathers each column-parallel input again in the backward",
          "[models]") {
  // Korthikanti et al. 2022 sec. 4.2.2: the layer keeps its sequence shard and all-gathers it for
  // the weight gradient, overlapped with the dgrad GEMM (Megatron-LM's async all-gather,
  // Transformer Engine's bulk overlap).
  const TrainingSpec training{
      .global_batch = 16, .micro_batch = 2, .precision = Precision::BF16, .tokens = {}};
  ParallelismSpec p;
  p.tp = 4;
  const Workload plain(gpt(2, 2048, 16, 1024), training, p);
  p.sequence_parallel = true;
  const Workload sp(gpt(2, 2048, 16, 1024), training, p);
  const ChunkWork& c = sp.chunk(0, 0);
  CHECK(count_comm(plain.chunk(0, 0).backward, "tp_sp_regather_attn") == 0);
  for (const auto& [name, gemm] : std::vector<std::pair<std::string, std::string>>{
           {"tp_sp_regather_attn", "qkv_dgrad"}, {"tp_sp_regather_mlp", "mlp_up_dgrad"}}) {
    INFO(name);
    CHECK(count_comm(c.backward, name) == c.layers);
    CHECK(count_comm(c.forward, name) == 0);
    const auto it = std::find_if(c.backward.comm.begin(), c.backward.comm.end(),
                                 [&](const CollectiveOp& op) { return op.name == name; });
    REQUIRE(it != c.backward.comm.end());
    CHECK(it->kind == CollectiveKind::ALL_GATHER);
    CHECK(it->overlap_with_compute);
    CHECK(it->beside == gemm);
    // The same bytes as the forward's gather of that input.
    const auto gather = std::find_if(c.forward.comm.begin(), c.forward.comm.end(),
                                     [](const CollectiveOp& op) { return op.name == "tp_sp_gather_attn"; });
    REQUIRE(gather != c.forward.comm.end());
    CHECK(it->bytes == gather->bytes);
  }
  // Every TP collective of a layer names the GEMM userbuffers pair it with.
  std::map<std::string, std::string> beside;
  for (const CollectiveOp& op : c.backward.comm) beside[op.name] = op.beside;
  for (const CollectiveOp& op : c.forward.comm) beside[op.name] = op.beside;
  CHECK(beside["tp_sp_gather_attn"] == "qkv");
  CHECK(beside["tp_sp_scatter_attn_out"] == "attn_out");
  CHECK(beside["tp_sp_gather_mlp"] == "mlp_up");
  CHECK(beside["tp_sp_scatter_mlp_down"] == "mlp_down");
  CHECK(beside["tp_sp_gather_mlp_down_grad"] == "mlp_down_dgrad");
  CHECK(beside["tp_sp_scatter_mlp_up_grad"] == "mlp_up_wgrad");
  CHECK(beside["tp_sp_gather_attn_out_grad"] == "attn_out_dgrad");
  CHECK(beside["tp_sp_scatter_qkv_grad"] == "qkv_wgrad");
}

TEST_CASE("models::Workload: an FP8 cast covers the input this GPU holds, whatever the GEMM's chunks",
          "[models]") {
  const int b = 1, s = 2048, h = 4096, t = 8;
  const TrainingSpec training{.global_batch = 8, .micro_batch = b, .precision = Precision::FP8, .tokens = {}};
  ParallelismSpec p;
  p.tp = t;
  p.sequence_parallel = true;
  const Workload whole(gpt(2, h, 32, s), training, p);
  p.tp_overlap = true;
  const Workload split(gpt(2, h, 32, s), training, p);
  // Pipeline overlap (attn_out, mlp_down): four chunks of one input the GPU holds whole, cast once.
  for (const char* name : {"fp8_cast_attn_out", "fp8_cast_mlp_down"}) {
    INFO(name);
    CHECK(find_op(split.chunk(0, 0).forward, name).bytes == find_op(whole.chunk(0, 0).forward, name).bytes);
  }
  // Ring exchange (qkv, mlp_up): this GPU casts its own shard, the others' arrive cast.
  CHECK(find_op(split.chunk(0, 0).forward, "fp8_cast_qkv").bytes.value() <
        find_op(whole.chunk(0, 0).forward, "fp8_cast_qkv").bytes.value() / (t - 1));
}

TEST_CASE("models::compute_precisions: every GEMM and attention op of a workload runs in one of them",
          "[models]") {
  // The dtypes the scenario check asks the profile's peaks for must be the workload's own: an op
  // in another dtype would reach the cost model without a peak in the middle of a simulation.
  ParallelismSpec p;
  p.tp = 2;
  p.pp = 2;
  p.dp = 2;
  ModelSpec moe = llama(4, 1024, 16, 4, 3584, 32000, 2048);
  moe.moe = MoeSpec{.experts = 4, .top_k = 2, .capacity_factor = 1.0, .expert_ffn_hidden = 0, .every = 2};
  for (const Precision precision : {Precision::FP32, Precision::FP16, Precision::BF16, Precision::FP8}) {
    for (const ModelSpec& model : {llama(4, 1024, 16, 4, 3584, 32000, 2048), moe}) {
      CAPTURE(to_string(precision), model.moe.has_value());
      const Workload w(model, TrainingSpec{.global_batch = 8, .precision = precision, .tokens = {}}, p);
      const std::vector<Precision> allowed = compute_precisions(precision);
      for (int s = 0; s < w.stages(); ++s) {
        const ChunkWork& c = w.chunk(s, 0);
        for (const WorkBlock* b :
             {&c.forward, &c.backward, &c.backward_input, &c.backward_weight, &c.weight_casts})
          for (const ComputeOp& op : b->compute)
            if (op.kind == OpKind::GEMM || op.kind == OpKind::ATTENTION) {
              CAPTURE(op.name);
              CHECK(std::find(allowed.begin(), allowed.end(), op.dtype) != allowed.end());
            }
      }
    }
  }
}
