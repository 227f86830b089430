#include <catch2/catch.hpp>

#include "tests/unit/shapes.hpp"

#include "models/workload.hpp"

using namespace odyssey;

namespace {

using test::gpt;

struct Setting {
  int tp = 8;
  bool sp = false;
  Recompute recompute = Recompute::NONE;
  bool flash = false;
  int pp = 4;
  PipelineScheduleKind schedule = PipelineScheduleKind::ONE_F_ONE_B;
  int v = 1;
  Precision precision = Precision::FP16;
};

// GPT-3 175B shape (Korthikanti et al. 2022 Table 3): s = 2048, h = 12288, a = 96.
constexpr double S = 2048, H = 12288, A = 96, L = 96;
constexpr int B = 1;

Workload gpt3(const Setting& x) {
  TrainingSpec t{.global_batch = 64, .micro_batch = B, .precision = x.precision, .tokens = {}};
  t.flash_attention = x.flash;
  ParallelismSpec p;
  p.tp = x.tp;
  p.pp = x.pp;
  p.dp = 1;
  p.sequence_parallel = x.sp;
  p.recompute = x.recompute;
  p.schedule = x.schedule;
  p.virtual_stages = x.v;
  return Workload(gpt(int(L), int(H), int(A), int(S)), t, p);
}

} // namespace

TEST_CASE("models::Memory: per-layer activations equal Korthikanti Table 2", "[models]") {
  const double sbh = S * B * H, t = 8;
  SECTION("tensor parallel, no recompute") {
    CHECK(gpt3({}).layer_activations().value() ==
          Approx(sbh * (10 + 24 / t + 5 * A * S / (H * t))).epsilon(1e-12));
  }
  SECTION("no parallelism") {
    CHECK(gpt3({.tp = 1}).layer_activations().value() == Approx(sbh * (34 + 5 * A * S / H)).epsilon(1e-12));
  }
  SECTION("tensor + sequence parallel") {
    CHECK(gpt3({.sp = true}).layer_activations().value() ==
          Approx(sbh * (34 + 5 * A * S / H) / t).epsilon(1e-12));
  }
  SECTION("selective recompute with sequence parallelism") {
    CHECK(gpt3({.sp = true, .recompute = Recompute::SELECTIVE}).layer_activations().value() ==
          Approx(34 * sbh / t).epsilon(1e-12));
  }
  SECTION("selective recompute without sequence parallelism") {
    CHECK(gpt3({.recompute = Recompute::SELECTIVE}).layer_activations().value() ==
          Approx(sbh * (10 + 24 / t)).epsilon(1e-12));
  }
  SECTION("full recompute") {
    CHECK(gpt3({.recompute = Recompute::FULL}).layer_activations().value() == Approx(2 * sbh).epsilon(1e-12));
  }
  SECTION("FP8 keeps the GEMMs' saved inputs in one byte") {
    // QKV and MLP inputs (whole) and the output- and down-projection inputs (split) at 1 byte
    // instead of 2: 10 -> 8 and 24 -> 19 (Q, K, V 6, projection input 1, GeLU input 8, down input 4).
    CHECK(gpt3({.sp = true, .recompute = Recompute::SELECTIVE, .precision = Precision::FP8})
              .layer_activations()
              .value() == Approx(27 * sbh / t).epsilon(1e-12));
    CHECK(
        gpt3({.recompute = Recompute::SELECTIVE, .precision = Precision::FP8}).layer_activations().value() ==
        Approx(sbh * (8 + 19 / t)).epsilon(1e-12));
  }
  SECTION("flash attention removes the 5*a*s^2*b term") {
    CHECK(gpt3({.flash = true}).layer_activations().value() == Approx(sbh * (10 + 24 / t)).epsilon(1e-12));
    CHECK(gpt3({.sp = true, .flash = true}).layer_activations().value() ==
          Approx(34 * sbh / t).epsilon(1e-12));
  }
}

TEST_CASE("models::Memory: in-flight micro-batches follow Korthikanti sec. 4.2.3", "[models]") {
  SECTION("1F1B: pp - stage") {
    const Workload w = gpt3({});
    for (int s = 0; s < 4; ++s) CHECK(w.inflight_microbatches(s) == 4 - s);
  }
  SECTION("interleaved: first stage holds pp*(1 + (pp-1)/(pp*v))") {
    const Workload w = gpt3({.schedule = PipelineScheduleKind::INTERLEAVED_1F1B, .v = 3});
    CHECK(w.inflight_microbatches(0) == Approx(4 * (1 + 3.0 / (4 * 3))));
  }
  SECTION("GPipe: all micro-batches") {
    CHECK(gpt3({.schedule = PipelineScheduleKind::GPIPE}).inflight_microbatches(1) == 64);
  }
}

TEST_CASE("models::Memory: stage activations", "[models]") {
  const double sbh = S * B * H, t = 8;
  SECTION("middle 1F1B stage: in-flight micro-batches times its layers") {
    const Workload w = gpt3({.sp = true, .flash = true});
    CHECK(w.memory(1).activations.value() == Approx(3 * (L / 4) * 34 * sbh / t).epsilon(1e-12));
  }
  SECTION("selective recompute re-creates one layer's attention scores during its backward") {
    const Workload w = gpt3({.sp = true, .recompute = Recompute::SELECTIVE});
    CHECK(w.memory(1).activations.value() ==
          Approx(3 * (L / 4) * 34 * sbh / t + 5 * A * S * S * B / t).epsilon(1e-12));
  }
  SECTION("full recompute: layer inputs plus one layer's activations during its backward") {
    const Workload w = gpt3({.recompute = Recompute::FULL, .flash = true});
    CHECK(w.memory(2).activations.value() ==
          Approx(2 * (L / 4) * 2 * sbh + sbh * (10 + 24 / t)).epsilon(1e-12));
  }
  SECTION("last stage adds 4*s*b*h/t*(1 + V/h) for the output layer (Korthikanti sec. 4.3)") {
    const Workload w = gpt3({.sp = true, .recompute = Recompute::SELECTIVE});
    CHECK(w.chunk_activations(3, 0).value() ==
          Approx((L / 4) * 34 * sbh / t + 4 * sbh / t * (1 + 51200 / H)).epsilon(1e-12));
  }
}

TEST_CASE("models::Memory: model states follow ZeRO (Rajbhandari et al. 2020)", "[models]") {
  ParallelismSpec p;
  p.dp = 64;
  TrainingSpec t{.global_batch = 64, .micro_batch = 1, .precision = Precision::FP16, .tokens = {}};
  const ModelSpec m = gpt(4, 1024, 16, 512);
  auto states = [&](int zero) {
    p.zero = zero;
    const MemoryBreakdown b = Workload(m, t, p).memory(0);
    return (b.weights + b.gradients + b.optimizer_states).value();
  };
  const double psi = Workload(m, t, p).parameters();
  const double n = 64;
  CHECK(Workload(m, t, p).local_parameters(0) == psi);
  CHECK(states(0) == Approx(16 * psi));
  CHECK(states(1) == Approx(4 * psi + 12 * psi / n));
  CHECK(states(2) == Approx(2 * psi + 14 * psi / n));
  // ZeRO-3 also holds the gathered weights of the layer being computed and of the prefetched
  // next one (4 layers; the embedding spread over them), or of the one being computed.
  p.zero3_unit = Zero3Unit::LAYER;
  CHECK(states(3) == Approx(16 * psi / n + 2 * (2 * psi / 4)));
  p.zero_overlap = false;
  CHECK(states(3) == Approx(16 * psi / n + 2 * psi / 4));
  p.zero_overlap = true;
  // DeepSpeed's buckets: two of them live, within stage3_max_live_parameters.
  p.zero3_unit = Zero3Unit::BUCKET;
  p.zero3_bucket = psi / 10;
  CHECK(states(3) == Approx(16 * psi / n + 2 * (2 * psi / 10)));
  p.zero3_max_live = psi / 8;
  CHECK(states(3) == Approx(16 * psi / n + 2 * (psi / 8)));
  p.zero3_max_live = 1e9;
  p.zero3_bucket = 5e7;
  SECTION("PyTorch FSDP keeps its shard in full precision: no low-precision shard beside it") {
    p.zero3_unit = Zero3Unit::LAYER;
    const double deepspeed = states(3);
    t.framework = Framework::PYTORCH_FSDP;
    CHECK(states(3) == Approx(deepspeed - 2 * psi / n));
    CHECK(states(1) == Approx(4 * psi + 12 * psi / n)); // below ZeRO-3 the weights are whole
    t.precision = Precision::FP32;                      // no lower-precision copy to drop
    t.framework = Framework::DEEPSPEED;
    const double fp32 = states(3);
    t.framework = Framework::PYTORCH_FSDP;
    CHECK(states(3) == Approx(fp32));
  }
  SECTION("bf16 reduces gradients in fp32; fp32 training keeps 16 bytes") {
    t.precision = Precision::BF16;
    CHECK(states(0) == Approx(18 * psi));
    t.precision = Precision::FP32;
    CHECK(states(0) == Approx(16 * psi));
  }
  SECTION("ZeRO-2 and 3 hold a chunk's whole gradients until their buckets are reduce-scattered") {
    auto workspace = [&](int zero) {
      p.zero = zero;
      return Workload(m, t, p).memory(0).workspace.value();
    };
    const double chunk_gradients = Workload(m, t, p).chunk(0, 0).parameters.value();
    p.dp_overlap = false;
    CHECK(workspace(2) - workspace(1) == Approx(chunk_gradients));
    p.dp_overlap = true;
    p.dp_bucket = Bytes(chunk_gradients / 8);
    CHECK(workspace(2) - workspace(1) == Approx(2 * chunk_gradients / 8));
    CHECK(workspace(3) - workspace(1) == Approx(2 * chunk_gradients / 8));
  }
  SECTION("workspace: context, cuBLAS, NCCL buffers and fragmentation") {
    p.zero = 0;
    const MemoryBreakdown b = Workload(m, t, p).memory(0);
    CHECK(b.workspace.value() > 512.0 * 1024 * 1024);
    CHECK(b.workspace.value() < 2.0 * 1024 * 1024 * 1024);
  }
}

TEST_CASE("models::Memory: context parallelism divides activations by cp", "[models]") {
  for (bool flash : {true, false}) {
    Setting s{.sp = true, .recompute = Recompute::NONE, .flash = flash};
    const Workload base = gpt3(s);
    TrainingSpec t{.global_batch = 64, .micro_batch = B, .precision = Precision::FP16, .tokens = {}};
    t.flash_attention = flash;
    ParallelismSpec p;
    p.tp = 8;
    p.pp = 4;
    p.cp = 2;
    p.sequence_parallel = true;
    const Workload cp(gpt(int(L), int(H), int(A), int(S)), t, p);
    // (34*s*b*h + 5*a*s^2*b)/t with s -> s/cp, the scores (s/cp) x s (Korthikanti Table 2).
    CHECK(cp.layer_activations().value() == Approx(base.layer_activations().value() / 2));
    CHECK(cp.memory(0).activations.value() == Approx(base.memory(0).activations.value() / 2));
  }
}

TEST_CASE("models::Memory: ZB-H1 holds pp micro-batches on every stage", "[models]") {
  const Workload w = gpt3({.sp = true,
                           .recompute = Recompute::SELECTIVE,
                           .pp = 4,
                           .schedule = PipelineScheduleKind::ZERO_BUBBLE});
  const Workload one = gpt3({.sp = true, .recompute = Recompute::SELECTIVE, .pp = 4});
  for (int s = 0; s < 4; ++s) CHECK(w.inflight_microbatches(s) == 4);
  CHECK(w.memory(0).activations.value() == Approx(one.memory(0).activations.value()));
}

namespace {

const Bytes A100_MEMORY(80.0 * 1024 * 1024 * 1024);

Bytes peak(const ModelSpec& m, const TrainingSpec& t, const ParallelismSpec& p) {
  const Workload w(m, t, p);
  Bytes most;
  for (int s = 0; s < w.stages(); ++s) most = std::max(most, w.memory(s).total());
  return most;
}

ModelSpec llama3_405b(int seq) {
  ModelSpec m;
  m.name = "llama3-405b"; // Dubey et al. 2024 Table 3
  m.layers = 126;
  m.hidden = 16384;
  m.heads = 128;
  m.kv_heads = 8;
  m.ffn_hidden = 53248;
  m.activation = Activation::SWIGLU;
  m.vocab = 128256;
  m.seq_len = seq;
  return m;
}

} // namespace

TEST_CASE("models::Memory: ZeRO-3 holds a few layers gathered, not the whole model (GPT-3 175B, dp 384)",
          "[models]") {
  const ModelSpec m = gpt(int(L), int(H), int(A), int(S));
  const TrainingSpec t{.global_batch = 1536, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}};
  ParallelismSpec p;
  p.dp = 384;
  p.zero = 3;
  p.recompute = Recompute::FULL;
  const Workload w(m, t, p);
  const double shard = w.parameters() * 2 / 384;
  const double layer = (w.parameters() - 51200.0 * H - S * H) / L * 2; // bytes of one layer's bf16 weights
  for (Zero3Unit unit : {Zero3Unit::LAYER, Zero3Unit::BUCKET}) {
    p.zero3_unit = unit;
    const MemoryBreakdown b = Workload(m, t, p).memory(0);
    INFO("unit " << to_string(unit) << ": weights " << b.weights.value() / (1 << 30) << " GiB");
    // The shard and at most the computed and the prefetched layer, far from 350 GB of weights.
    CHECK(b.weights.value() > shard);
    CHECK(b.weights.value() < shard + 2.1 * layer);
    CHECK(b.total() < A100_MEMORY);
  }
}

TEST_CASE("models::Memory: the impossible layouts stay impossible on 80 GiB", "[models]") {
  SECTION("GPT-3 175B, pure data parallelism without ZeRO") {
    ParallelismSpec p;
    p.dp = 384;
    p.recompute = Recompute::FULL;
    CHECK(peak(gpt(int(L), int(H), int(A), int(S)),
               {.global_batch = 1536, .micro_batch = 1, .precision = Precision::FP16, .tokens = {}},
               p) > A100_MEMORY);
  }
  SECTION("Llama 3 405B with tp 8 alone") {
    ParallelismSpec p;
    p.tp = 8;
    p.sequence_parallel = true;
    p.dp = 2;
    p.recompute = Recompute::FULL;
    CHECK(peak(llama3_405b(8192),
               {.global_batch = 16, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}},
               p) > A100_MEMORY);
  }
  SECTION("Llama 3 405B at 128k context without context parallelism or recomputation") {
    ParallelismSpec p;
    p.tp = 8;
    p.sequence_parallel = true;
    p.pp = 14; // 9 layers a stage
    p.dp = 1;
    p.zero = 1;
    TrainingSpec t{.global_batch = 16, .micro_batch = 1, .precision = Precision::BF16, .tokens = {}};
    CHECK(peak(llama3_405b(131072), t, p) > A100_MEMORY);
  }
}
