#include "models/model_schema.hpp"

#include <string>

#include <fmt/format.h>

namespace odyssey {
namespace {

/// The model's MoE settings, created with their defaults by the first `moe.*` key.
MoeSpec& moe_of(ModelSpec& m) {
  if (!m.moe) m.moe.emplace();
  return *m.moe;
}

} // namespace

const std::vector<Field<ModelSpec>>& model_fields() {
  static const std::vector<Field<ModelSpec>> fields{
      {"name", "string", "preset name, else custom", "model name used in reports",
       [](ModelSpec& m, const YamlValue& v) { m.name = v.as_string(); },
       [](const ModelSpec& m) { return yaml_string(m.name); }},
      {"layers", "positive integer", REQUIRED, "transformer layers",
       [](ModelSpec& m, const YamlValue& v) { m.layers = positive_int(v); },
       [](const ModelSpec& m) { return std::to_string(m.layers); }},
      {"hidden", "positive integer", REQUIRED, "hidden size",
       [](ModelSpec& m, const YamlValue& v) { m.hidden = positive_int(v); },
       [](const ModelSpec& m) { return std::to_string(m.hidden); }},
      {"heads", "positive integer", REQUIRED, "attention (query) heads",
       [](ModelSpec& m, const YamlValue& v) { m.heads = positive_int(v); },
       [](const ModelSpec& m) { return std::to_string(m.heads); }},
      {"kv_heads", "positive integer", "heads",
       "key/value heads; fewer than heads is grouped-query attention",
       [](ModelSpec& m, const YamlValue& v) { m.kv_heads = positive_int(v); },
       [](const ModelSpec& m) { return std::to_string(m.kv_heads); }},
      {"ffn_hidden", "positive integer", "4 x hidden", "feed-forward inner size",
       [](ModelSpec& m, const YamlValue& v) { m.ffn_hidden = positive_int(v); },
       [](const ModelSpec& m) { return std::to_string(m.ffn_hidden); }},
      {"activation", "gelu | swiglu", "gelu", "feed-forward activation",
       [](ModelSpec& m, const YamlValue& v) {
         m.activation = v.as_enum<Activation>({{"gelu", Activation::GELU}, {"swiglu", Activation::SWIGLU}});
       },
       [](const ModelSpec& m) { return std::string(to_string(m.activation)); }},
      {"vocab", "positive integer", REQUIRED, "vocabulary size (as padded by the framework)",
       [](ModelSpec& m, const YamlValue& v) { m.vocab = positive_int(v); },
       [](const ModelSpec& m) { return std::to_string(m.vocab); }},
      {"seq_len", "positive integer", REQUIRED, "sequence length in tokens",
       [](ModelSpec& m, const YamlValue& v) { m.seq_len = positive_int(v); },
       [](const ModelSpec& m) { return std::to_string(m.seq_len); }},
      {"dropout", "number in [0, 1)", "0.1 (gelu), 0 (swiglu)",
       "dropout probability of hidden states and attention probabilities; 0: no dropout kernels or masks",
       [](ModelSpec& m, const YamlValue& v) {
         const double p = v.as_number();
         if (!(p >= 0 && p < 1))
           v.fail(fmt::format("must be at least 0 and below 1, got '{}'", v.as_string()));
         m.dropout = p;
       },
       [](const ModelSpec& m) { return yaml_number(dropout_probability(m)); }},
      {"moe.experts", "positive integer", "none (dense)",
       "experts per MoE layer; any moe key makes the model mixture-of-experts and requires this one",
       [](ModelSpec& m, const YamlValue& v) { moe_of(m).experts = positive_int(v); },
       [](const ModelSpec& m) { return m.moe ? std::to_string(m.moe->experts) : std::string(); }},
      {"moe.top_k", "positive integer", "2", "experts each token is routed to",
       [](ModelSpec& m, const YamlValue& v) { moe_of(m).top_k = positive_int(v); },
       [](const ModelSpec& m) { return m.moe ? std::to_string(m.moe->top_k) : std::string(); }},
      {"moe.capacity_factor", "number > 0", "1.25",
       "tokens one expert accepts, relative to an even split of the routed tokens",
       [](ModelSpec& m, const YamlValue& v) {
         const double factor = v.as_number();
         if (!(factor > 0)) v.fail(fmt::format("must be greater than zero, got '{}'", v.as_string()));
         moe_of(m).capacity_factor = factor;
       },
       [](const ModelSpec& m) { return m.moe ? yaml_number(m.moe->capacity_factor) : std::string(); }},
      {"moe.expert_ffn_hidden", "positive integer", "ffn_hidden", "feed-forward inner size of one expert",
       [](ModelSpec& m, const YamlValue& v) { moe_of(m).expert_ffn_hidden = positive_int(v); },
       [](const ModelSpec& m) { return m.moe ? std::to_string(m.moe->expert_ffn_hidden) : std::string(); }},
      {"moe.every", "positive integer", "1",
       "an MoE feed-forward layer every `every` layers (1: every layer)",
       [](ModelSpec& m, const YamlValue& v) { moe_of(m).every = positive_int(v); },
       [](const ModelSpec& m) { return m.moe ? std::to_string(m.moe->every) : std::string(); }},
  };
  return fields;
}

} // namespace odyssey
