#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "calibration/cost_model.hpp"

using namespace odyssey;

namespace {

/// An H100-like profile built in code, so these properties do not depend on the YAML reader.
/// Numbers follow calibration/profiles/h100-sxm5-80gb-datasheet.yaml.
Profile h100_like() {
  Profile p;
  p.name = "h100-test";
  p.gpu = "H100-SXM5-80GB";
  p.peak[Precision::BF16] = FlopsPerSecond(989.4e12);
  p.peak[Precision::FP8] = FlopsPerSecond(1978.9e12);
  p.gemm_max_efficiency_by_dtype[Precision::BF16] = 0.803;
  p.gemm_max_efficiency_by_dtype[Precision::FP8] = 0.709;
  p.gemm_max_efficiency = 0.803;
  p.sms = 132;
  p.gemm_tile_m = 128;
  p.gemm_tile_n = 256;
  p.attention_efficiency = 0.5;
  p.memory_bandwidth = BytesPerSecond(3.35e12);
  p.memory_efficiency = 0.85;
  p.launch_overhead = Seconds(4e-6);
  p.collective_base_latency_by_protocol = {
      .ll = Seconds(6.6e-6), .ll128 = Seconds(14e-6), .simple = Seconds(8.4e-6)};
  p.collective_base_latency = Seconds(8.4e-6);
  p.nvlink = {.bandwidth = BytesPerSecond(450e9),
              .bus_efficiency = 370.0 / 450.0,
              .step_latency = Seconds(3.4e-6),
              .step_latency_by_protocol = {
                  .ll = Seconds(0.6e-6), .ll128 = Seconds(1.9e-6), .simple = Seconds(3.4e-6)}};
  p.pcie = {
      .bandwidth = BytesPerSecond(64e9),
      .bus_efficiency = 0.75,
      .step_latency = Seconds(5.7e-6),
      .step_latency_by_protocol = {.ll = Seconds(1e-6), .ll128 = Seconds(2.5e-6), .simple = Seconds(5.7e-6)}};
  p.net = {
      .bandwidth = BytesPerSecond(50e9),
      .bus_efficiency = 0.96,
      .step_latency = Seconds(14e-6),
      .step_latency_by_protocol = {.ll = Seconds(2.7e-6), .ll128 = Seconds(4e-6), .simple = Seconds(14e-6)}};
  return p;
}

/// An A100-like profile (232 of 300 GB/s NVLink busbw).
Profile a100_like() {
  Profile p = h100_like();
  p.gpu = "A100-SXM4-80GB";
  p.peak.erase(Precision::FP8);
  p.peak[Precision::BF16] = FlopsPerSecond(312e12);
  p.gemm_max_efficiency_by_dtype = {{Precision::BF16, 0.869}};
  p.sms = 108;
  p.gemm_tile_n = 128;
  p.memory_bandwidth = BytesPerSecond(2039e9);
  p.nvlink.bandwidth = BytesPerSecond(300e9);
  p.nvlink.bus_efficiency = 232.0 / 300.0;
  return p;
}

ComputeOp gemm_op(long m, long n, long k, Precision dtype = Precision::BF16) {
  ComputeOp op;
  op.name = "gemm";
  op.kind = OpKind::GEMM;
  op.dtype = dtype;
  op.gemm = {.m = m, .n = n, .k = k};
  op.flops = Flops(2.0 * m * n * k);
  return op;
}

/// Seconds per FLOP, launch overhead excluded.
double time_per_flop(const CostModel& model, long m, long n, long k) {
  const ComputeOp op = gemm_op(m, n, k);
  return (model.compute_time(op) - model.profile().launch_overhead).value() / op.flops.value();
}

/// nccl-tests bus bandwidth of an all-reduce: size / time x 2(n-1)/n.
double allreduce_busbw(const CostModel& model, Bytes size, GroupShape g, BytesPerSecond intra,
                       BytesPerSecond inter) {
  const Seconds t = model.collective_time(CollectiveKind::ALL_REDUCE, size, g, intra, inter);
  return size.value() / t.value() * 2.0 * (g.ranks - 1) / g.ranks;
}

} // namespace

TEST_CASE("calibration::CostModel: GEMM efficiency never above the best fraction", "[calibration]") {
  const CostModel model(h100_like());
  for (long m : {1L, 7L, 128L, 1000L, 2048L, 8192L, 65536L}) {
    for (long n : {1L, 128L, 3000L, 8192L}) {
      for (long k : {1L, 64L, 4096L, 16384L}) {
        INFO(m << "x" << n << "x" << k);
        const double e = model.gemm_efficiency({.m = m, .n = n, .k = k}, Precision::BF16);
        CHECK(e > 0.0);
        CHECK(e <= 0.803);
        CHECK(model.gemm_efficiency({.m = m, .n = n, .k = k}, Precision::FP8) <= 0.709);
      }
    }
  }
  CHECK(model.gemm_efficiency({.m = 8192, .n = 8192, .k = 8192}, Precision::BF16) > 0.7);
}

TEST_CASE("calibration::CostModel: small GEMMs are slower per FLOP than large square ones", "[calibration]") {
  const CostModel model(h100_like());
  CHECK(time_per_flop(model, 128, 128, 128) > 2.0 * time_per_flop(model, 8192, 8192, 8192));
}

TEST_CASE("calibration::CostModel: skinny GEMMs are slower per FLOP", "[calibration]") {
  const CostModel model(h100_like());
  CHECK(time_per_flop(model, 1, 8192, 8192) > 10.0 * time_per_flop(model, 8192, 8192, 8192));
  CHECK(time_per_flop(model, 8192, 8192, 16) > time_per_flop(model, 8192, 8192, 8192));
}

TEST_CASE("calibration::CostModel: GEMM time adds launch overhead per kernel", "[calibration]") {
  const CostModel model(h100_like());
  ComputeOp op = gemm_op(4096, 4096, 4096);
  const Seconds one = model.compute_time(op);
  op.kernels = 3;
  CHECK((model.compute_time(op) - one).value() == Approx(8e-6));
}

TEST_CASE("calibration::CostModel: interpolation over recorded GEMM points", "[calibration]") {
  Profile p = h100_like();
  p.gemm_points = {{.m = 1024, .n = 1024, .k = 1024, .dtype = Precision::BF16, .efficiency = 0.55},
                   {.m = 4096, .n = 4096, .k = 4096, .dtype = Precision::BF16, .efficiency = 0.72},
                   {.m = 16384, .n = 16384, .k = 16384, .dtype = Precision::BF16, .efficiency = 0.78},
                   {.m = 1024, .n = 16384, .k = 4096, .dtype = Precision::BF16, .efficiency = 0.66}};
  const CostModel model(p);

  SECTION("a recorded point is reproduced exactly") {
    for (const GemmPoint& g : p.gemm_points) {
      CHECK(model.gemm_efficiency({.m = g.m, .n = g.n, .k = g.k}, Precision::BF16) == g.efficiency);
    }
  }
  SECTION("between recorded points it stays within their range") {
    for (long m : {1024L, 2000L, 3000L, 8192L, 12000L, 16384L}) {
      for (long n : {1024L, 5000L, 16384L}) {
        for (long k : {1024L, 2048L, 10000L, 16384L}) {
          INFO(m << "x" << n << "x" << k);
          const double e = model.gemm_efficiency({.m = m, .n = n, .k = k}, Precision::BF16);
          CHECK(e >= 0.55);
          CHECK(e <= 0.78);
        }
      }
    }
  }
  SECTION("beyond the measured range it never exceeds the nearest point") {
    CHECK(model.gemm_efficiency({.m = 65536, .n = 65536, .k = 65536}, Precision::BF16) <= 0.78);
    CHECK(model.gemm_efficiency({.m = 128, .n = 128, .k = 128}, Precision::BF16) < 0.55);
    CHECK(model.gemm_efficiency({.m = 1, .n = 1024, .k = 1024}, Precision::BF16) < 0.55);
  }
  SECTION("points of another dtype are not used") {
    CHECK(model.gemm_efficiency({.m = 1024, .n = 1024, .k = 1024}, Precision::FP8) !=
          model.gemm_efficiency({.m = 1024, .n = 1024, .k = 1024}, Precision::BF16));
  }
}

TEST_CASE("calibration::CostModel: fused attention in the FlashAttention papers' convention",
          "[calibration]") {
  Profile p = h100_like();
  p.attention_efficiency = 0.5;
  p.attention_backward_efficiency = 0.4;
  const CostModel model(p);
  ComputeOp op;
  op.name = "attn_core";
  op.kind = OpKind::ATTENTION;
  op.dtype = Precision::BF16;
  op.attention = {.batch = 1, .heads = 16, .kv_heads = 16, .seq_q = 4096, .seq_kv = 4096, .head_dim = 128};
  op.flops = Flops(1e12); // the model's count; the price follows the shape
  const Seconds launch = model.profile().launch_overhead;
  const double full = 4.0 * 16 * 4096.0 * 4096.0 * 128; // 4 s^2 d h
  SECTION("causal: half the FLOPs, at the 1.75x speed-up FlashAttention-2 measured, not 2x") {
    const Seconds causal = model.compute_time(op) - launch;
    CHECK(causal.value() == Approx(0.5 * full / (989.4e12 * 0.5 * 1.75 / 2)));
    op.attention.causal = false;
    CHECK((model.compute_time(op) - launch).value() == Approx(1.75 * causal.value()));
    op.attention.causal = true;
    op.attention.fused = false; // unfused kernels compute the whole score matrix
    CHECK((model.compute_time(op) - launch).value() == Approx(1.75 * causal.value()));
  }
  SECTION("backward: 2.5x the forward's FLOPs at the backward's own rate") {
    op.attention.causal = false;
    const Seconds forward = model.compute_time(op) - launch;
    op.pass = Pass::BACKWARD_INPUT;
    CHECK((model.compute_time(op) - launch).value() == Approx(2.5 * forward.value() * 0.5 / 0.4));
  }
  SECTION("FlashAttention-2's figures where the scenario asks for it and the profile has them") {
    op.attention.kernel = AttentionKernel::FLASH_ATTENTION_2;
    const Seconds newest = model.compute_time(op) - launch; // none listed: the newest kernel's
    Profile with = p;
    with.attention_fa2_efficiency = 0.25;
    with.attention_fa2_backward_efficiency = 0.2;
    CHECK((CostModel(with).compute_time(op) - launch).value() == Approx(2.0 * newest.value()));
  }
  SECTION("FlashAttention's Triton kernel: FlashAttention-2's rate, 1.9x slower, either pass") {
    Profile with = p;
    with.attention_fa2_efficiency = 0.25;
    with.attention_fa2_backward_efficiency = 0.2;
    const CostModel m(with);
    for (const AttentionPass pass : {AttentionPass::FORWARD, AttentionPass::BACKWARD}) {
      op.attention.kernel = AttentionKernel::FLASH_ATTENTION_2;
      const double fa2 = m.attention_efficiency(op.attention, pass, Precision::BF16);
      op.attention.kernel = AttentionKernel::FLASH_ATTENTION_TRITON;
      CHECK(m.attention_efficiency(op.attention, pass, Precision::BF16) == Approx(fa2 / 1.9));
    }
    // A profile without FlashAttention-2 figures (Ampere: its newest kernel is FlashAttention-2).
    op.attention.kernel = AttentionKernel::NEWEST;
    const double newest = model.attention_efficiency(op.attention, AttentionPass::FORWARD, Precision::BF16);
    op.attention.kernel = AttentionKernel::FLASH_ATTENTION_TRITON;
    CHECK(model.attention_efficiency(op.attention, AttentionPass::FORWARD, Precision::BF16) ==
          Approx(newest / 1.9));
  }
  SECTION("attention points are interpolated in log2(seq), per head dimension") {
    Profile with = p;
    with.attention_points = {
        {.pass = AttentionPass::FORWARD, .head_dim = 128, .seq = 2048, .causal = true, .efficiency = 0.4},
        {.pass = AttentionPass::FORWARD, .head_dim = 128, .seq = 8192, .causal = true, .efficiency = 0.6}};
    const CostModel m(with);
    CHECK(m.attention_efficiency(op.attention, AttentionPass::FORWARD, Precision::BF16) == Approx(0.5));
    op.attention.seq_kv = 65536;
    CHECK(m.attention_efficiency(op.attention, AttentionPass::FORWARD, Precision::BF16) == Approx(0.6));
    CHECK(m.price_source(op) == with.provenance.kind);
    op.pass = Pass::BACKWARD_INPUT; // no backward points: the profile's figure, a datasheet price
    CHECK(m.price_source(op) == ProfileKind::DATASHEET);
  }
}

TEST_CASE("calibration::CostModel: memory-bound time is linear in bytes", "[calibration]") {
  const CostModel model(h100_like());
  const Seconds launch = model.profile().launch_overhead;
  for (OpKind kind : {OpKind::MEMORY_BOUND, OpKind::OPTIMIZER}) {
    ComputeOp op;
    op.name = "layernorm";
    op.kind = kind;
    op.bytes = Bytes(1e9);
    const Seconds t1 = model.compute_time(op) - launch;
    op.bytes = Bytes(3e9);
    const Seconds t3 = model.compute_time(op) - launch;
    CHECK(t3.value() == Approx(3.0 * t1.value()));
    CHECK(t1.value() == Approx(1e9 / (3.35e12 * 0.85)));
  }
  CHECK(model.compute_time(std::vector<ComputeOp>{gemm_op(1024, 1024, 1024), gemm_op(1024, 1024, 1024)})
            .value() == Approx(2.0 * model.compute_time(gemm_op(1024, 1024, 1024)).value()));
}

TEST_CASE("calibration::CostModel: large all-reduce reaches NVLink bus bandwidth", "[calibration]") {
  using namespace literals;
  // 1 GiB over 8 GPUs of one server: the 56 us ring latency is under 1% of the transfer at A100's
  // 232 GB/s. At H100's 370 GB/s it is 1.1%, hence the wider margin there.
  const CostModel a100(a100_like());
  const GroupShape server{.ranks = 8, .servers = 1};
  const BytesPerSecond a100_nvlink(300e9);
  CHECK(allreduce_busbw(a100, 1_GiB, server, a100_nvlink, BytesPerSecond(25e9)) ==
        Approx(300e9 * 232.0 / 300.0).epsilon(0.01));
  const CollectivePlan plan = a100.collective(CollectiveKind::ALL_REDUCE, 1_GiB, server);
  CHECK(plan.algorithm == "ring");
  CHECK(plan.steps == 14);
  CHECK(plan.edge_bytes_factor == Approx(14.0 / 8.0));
  CHECK(plan.latency.value() == Approx(8.4e-6 + 14 * 3.4e-6));

  const CostModel h100(h100_like());
  CHECK(allreduce_busbw(h100, 1_GiB, server, BytesPerSecond(450e9), BytesPerSecond(50e9)) ==
        Approx(370e9).epsilon(0.02));
}

TEST_CASE("calibration::CostModel: ring across servers is bound by the slower link class", "[calibration]") {
  using namespace literals;
  const CostModel model(h100_like());
  const GroupShape two_servers{.ranks = 16, .servers = 2};
  const BytesPerSecond nvlink(450e9), net(50e9);
  // One GPU per server: its NIC bounds the ring.
  CHECK(allreduce_busbw(model, 4_GiB, {.ranks = 2, .servers = 2}, nvlink, net) ==
        Approx(50e9 * 0.96).epsilon(0.01));
  // Eight GPUs per server: eight channels leave through eight NICs (NCCL's busBw = channels x
  // per-channel bandwidth, 8 x 48 GB/s), so NVLink's 370 GB/s is the slower class.
  CHECK(allreduce_busbw(model, 4_GiB, two_servers, nvlink, net) ==
        Approx(450e9 * 370.0 / 450.0).epsilon(0.01));
  const CollectivePlan plan = model.collective(CollectiveKind::ALL_REDUCE, 4_GiB, two_servers, nvlink, net);
  // NCCL's ring: 2(n-1) steps, 2(nodes-1) of them cross the network.
  CHECK(plan.latency.value() == Approx(8.4e-6 + 28 * 3.4e-6 + 2 * 14e-6));
}

TEST_CASE("calibration::CostModel: small-message latency grows with ranks", "[calibration]") {
  using namespace literals;
  const CostModel model(h100_like());
  const BytesPerSecond nvlink(450e9), net(50e9);
  double previous = 0.0;
  for (int servers : {1, 2, 4, 16, 128}) {
    const GroupShape g{.ranks = 8 * servers, .servers = servers};
    const double t = model.collective_time(CollectiveKind::ALL_REDUCE, 8_B, g, nvlink, net).value();
    CHECK(t > previous);
    previous = t;
  }
  const double t2 = model.collective_time(CollectiveKind::ALL_GATHER, 8_B, {.ranks = 2}, nvlink, net).value();
  const double t8 = model.collective_time(CollectiveKind::ALL_GATHER, 8_B, {.ranks = 8}, nvlink, net).value();
  CHECK(t8 > t2);
}

TEST_CASE("calibration::CostModel: protocol LL for tiny messages, Simple for huge ones", "[calibration]") {
  using namespace literals;
  const CostModel model(h100_like());
  for (GroupShape g : {GroupShape{.ranks = 8, .servers = 1}, GroupShape{.ranks = 64, .servers = 8}}) {
    CHECK(model.collective(CollectiveKind::ALL_REDUCE, 8_B, g).protocol == "LL");
    CHECK(model.collective(CollectiveKind::ALL_REDUCE, 4_GiB, g).protocol == "Simple");
  }
  const CollectivePlan ll = model.collective(CollectiveKind::ALL_REDUCE, 8_B, {.ranks = 8});
  CHECK(ll.efficiency_nvlink == Approx(0.5 * 370.0 / 450.0));
}

TEST_CASE("calibration::CostModel: collective steps and bytes per kind", "[calibration]") {
  using namespace literals;
  const CostModel model(h100_like());
  const GroupShape g{.ranks = 8};
  CHECK(model.collective(CollectiveKind::ALL_GATHER, 1_GiB, g).steps == 7);
  CHECK(model.collective(CollectiveKind::REDUCE_SCATTER, 1_GiB, g).edge_bytes_factor == Approx(7.0 / 8.0));
  CHECK(model.collective(CollectiveKind::BROADCAST, 1_GiB, g).edge_bytes_factor == 1.0);
  CHECK(model.collective(CollectiveKind::ALL_TO_ALL, 1_GiB, g).edge_bytes_factor == Approx(7.0 / 8.0));
  CHECK(model.collective(CollectiveKind::SEND_RECV, 1_GiB, {.ranks = 2}).steps == 1);

  const CollectivePlan alone = model.collective(CollectiveKind::ALL_REDUCE, 1_GiB, {.ranks = 1});
  CHECK(alone.steps == 0);
  CHECK(alone.latency.value() == 0.0);
  CHECK(alone.edge_bytes_factor == 0.0);
  CHECK(model
            .collective_time(CollectiveKind::ALL_REDUCE, 1_GiB, {.ranks = 1}, BytesPerSecond(450e9),
                             BytesPerSecond(50e9))
            .value() == 0.0);
}

TEST_CASE("calibration::CostModel: tensor-core kernels at the rate the board sustains, streaming ones not",
          "[calibration]") {
  Profile p = h100_like();
  const CostModel burst(p);
  p.gemm_sustained = {{Precision::BF16, 0.95}, {Precision::FP8, 0.965}};
  const CostModel sustained(p);
  const Seconds launch = p.launch_overhead;
  // GEMMs of each dtype at its own sustained fraction of the measured rate.
  for (const auto& [dtype, fraction] : {std::pair{Precision::BF16, 0.95}, std::pair{Precision::FP8, 0.965}}) {
    const ComputeOp op = gemm_op(4096, 4096, 4096, dtype);
    CHECK((sustained.compute_time(op) - launch).value() ==
          Approx((burst.compute_time(op) - launch).value() / fraction));
  }
  // Fused attention too.
  ComputeOp attention;
  attention.kind = OpKind::ATTENTION;
  attention.dtype = Precision::BF16;
  attention.attention = {
      .batch = 1, .heads = 16, .kv_heads = 16, .seq_q = 4096, .seq_kv = 4096, .head_dim = 128};
  CHECK((sustained.compute_time(attention) - launch).value() ==
        Approx((burst.compute_time(attention) - launch).value() / 0.95));
  // A streaming kernel is bound by HBM, not by the clock the power limit sets.
  ComputeOp copy;
  copy.kind = OpKind::MEMORY_BOUND;
  copy.dtype = Precision::BF16;
  copy.bytes = Bytes(1e9);
  CHECK(sustained.compute_time(copy) == burst.compute_time(copy));
  // Without the key, the measured rate stands.
  CHECK(burst.profile().sustained(Precision::BF16) == 1.0);
}
