// Shape lists for the GEMM and attention benchmarks; see shapes.hpp.
#include "kernels/shapes.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <tuple>

#include "kernels/bench_common.hpp"

namespace odyssey::bench {

ShapeList read_shapes(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError("cannot open shapes file '" + path + "'");
  ShapeList list;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::istringstream fields(line);
    std::string kind;
    if (!(fields >> kind)) continue;
    const std::string where = path + ":" + std::to_string(number) + ": ";
    if (kind == "gemm") {
      GemmCase g;
      if (!(fields >> g.name >> g.role >> g.m >> g.n >> g.k >> g.batch >> g.dtype) || g.m < 1 || g.n < 1 ||
          g.k < 1 || g.batch < 1)
        throw UsageError(where + "expected 'gemm NAME ROLE M N K BATCH DTYPE' with positive sizes");
      static const std::vector<std::string> ROLES = {"fprop", "dgrad", "wgrad", "batched"};
      if (std::find(ROLES.begin(), ROLES.end(), g.role) == ROLES.end())
        throw UsageError(where + "unknown role '" + g.role + "' (expected fprop, dgrad, wgrad or batched)");
      list.gemms.push_back(g);
    } else if (kind == "attention") {
      AttentionCase a;
      int causal = 1;
      if (!(fields >> a.name >> a.batch >> a.heads >> a.kv_heads >> a.seq_q >> a.seq_kv >> a.head_dim >>
            causal >> a.dtype) ||
          a.batch < 1 || a.heads < 1 || a.kv_heads < 1 || a.seq_q < 1 || a.seq_kv < 1 || a.head_dim < 1 ||
          a.heads % a.kv_heads != 0)
        throw UsageError(where +
                         "expected 'attention NAME B HEADS KV_HEADS SEQ_Q SEQ_KV HEAD_DIM CAUSAL DTYPE' with "
                         "positive sizes and HEADS a multiple of KV_HEADS");
      a.causal = causal != 0;
      list.attentions.push_back(a);
    } else {
      throw UsageError(where + "unknown case '" + kind + "' (expected gemm or attention)");
    }
  }
  return list;
}

std::vector<GemmCase> gemm_sweep(bool quick) {
  const std::vector<long> hiddens =
      quick ? std::vector<long>{4096, 8192} : std::vector<long>{2048, 4096, 8192, 12288, 16384};
  const std::vector<long> tps = quick ? std::vector<long>{1, 8} : std::vector<long>{1, 2, 4, 8};
  const std::vector<long> token_counts =
      quick ? std::vector<long>{4096} : std::vector<long>{1024, 4096, 16384};
  constexpr long VOCAB = 51200; // GPT-3's padded vocabulary (Megatron-LM pads to a multiple of 128 x tp)
  std::vector<GemmCase> out;
  std::vector<std::tuple<long, long, long, std::string>> seen;
  for (long h : hiddens) {
    for (long tp : tps) {
      if (h % tp != 0) continue;
      const long ffn = 4 * h;
      // (name, output features, input features) of each linear layer on one TP rank.
      const std::vector<std::tuple<std::string, long, long>> layers = {{"qkv", 3 * h / tp, h},
                                                                       {"attn_out", h, h / tp},
                                                                       {"mlp_up", ffn / tp, h},
                                                                       {"mlp_down", h, ffn / tp},
                                                                       {"lm_head", VOCAB / tp, h}};
      for (long tokens : token_counts) {
        for (const auto& [name, out_f, in_f] : layers) {
          const GemmCase base{.name = name, .hidden = h, .tp = tp, .tokens = tokens};
          // Forward Y = X W^T; input gradient dX = dY W; weight gradient dW^T = X^T dY (models/workload.cpp).
          GemmCase fprop = base, dgrad = base, wgrad = base;
          fprop.role = "fprop", fprop.m = tokens, fprop.n = out_f, fprop.k = in_f;
          dgrad.role = "dgrad", dgrad.m = tokens, dgrad.n = in_f, dgrad.k = out_f;
          wgrad.role = "wgrad", wgrad.m = in_f, wgrad.n = out_f, wgrad.k = tokens;
          for (const GemmCase& g : {fprop, dgrad, wgrad}) {
            const auto key = std::make_tuple(g.m, g.n, g.k, g.role);
            if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
            seen.push_back(key);
            out.push_back(g);
          }
        }
      }
    }
  }
  return out;
}

std::vector<AttentionCase> attention_sweep(bool quick) {
  const std::vector<long> head_dims = quick ? std::vector<long>{128} : std::vector<long>{64, 128};
  const std::vector<long> seqs = quick ? std::vector<long>{2048} : std::vector<long>{1024, 2048, 4096, 8192};
  const std::vector<long> gqa =
      quick ? std::vector<long>{1, 8} : std::vector<long>{1, 4, 8}; // query heads per KV head
  std::vector<AttentionCase> out;
  for (long d : head_dims) {
    for (long s : seqs) {
      for (long ratio : gqa) {
        // 32 query heads of one GPU's share; batch keeps about 16k tokens per call.
        const long heads = 32;
        out.push_back(AttentionCase{.name = "sdpa",
                                    .batch = std::max(1L, 16384 / s),
                                    .heads = heads,
                                    .kv_heads = heads / ratio,
                                    .seq_q = s,
                                    .seq_kv = s,
                                    .head_dim = d,
                                    .causal = true,
                                    .dtype = "bf16"});
      }
    }
  }
  return out;
}

} // namespace odyssey::bench
