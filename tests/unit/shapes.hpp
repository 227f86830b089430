// Model shapes shared by the unit tests.
#pragma once

#include "models/spec.hpp"

namespace odyssey::test {

/// A GPT-style shape (GELU MLP of 4h, multi-head attention), as Megatron-LM's Table 1 models.
inline ModelSpec gpt(int layers, int hidden, int heads, int seq = 2048, int vocab = 51200) {
  ModelSpec m;
  m.name = "gpt";
  m.layers = layers;
  m.hidden = hidden;
  m.heads = heads;
  m.kv_heads = heads;
  m.ffn_hidden = 4 * hidden;
  m.activation = Activation::GELU;
  m.vocab = vocab;
  m.seq_len = seq;
  return m;
}

} // namespace odyssey::test
