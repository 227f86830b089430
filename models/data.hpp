// The scenario's `data:` block: how the job's samples reach its GPUs (sim/storage.*,
// plan_data_loading, prices it).
#pragma once

#include "models/units.hpp"

namespace odyssey {

/// What the loader reads: TOKENIZED, pre-packed token ids (Megatron-LM's indexed datasets);
/// RAW text the loader tokenises itself.
enum class DataFormat { TOKENIZED, RAW };
/// Who prepares the samples: LOCAL, the loader workers on each GPU server's host CPUs; CPU_HOSTS,
/// the machine's CPU-only servers (a data service), which send the samples over the fabric.
enum class DataService { LOCAL, CPU_HOSTS };

inline const char* to_string(DataFormat f) {
  return f == DataFormat::TOKENIZED ? "tokenized" : "raw";
}
inline const char* to_string(DataService s) {
  return s == DataService::LOCAL ? "local" : "cpu-hosts";
}

struct DataSpec {
  DataFormat format = DataFormat::TOKENIZED;
  /// Stored bytes per token; zero: the format's default (data_bytes_per_token).
  Bytes bytes_per_token;
  /// CPU time of one sample on one worker core; zero: the format's default (data_cpu_per_sample).
  Seconds cpu_per_sample;
  /// Loader worker cores per loading server (or per CPU host with a data service). ASSUMPTION
  /// default: 16, Megatron-LM's `--num-workers` default of 2 per rank for the 8 GPUs of a server.
  int workers = 16;
  /// Batches each loader keeps ready ahead of training (PyTorch DataLoader's prefetch_factor
  /// default, 2): it absorbs jitter, not a steady shortfall, so it does not change the stall.
  int prefetch = 2;
  DataService service = DataService::LOCAL;
};

/// Stored bytes per token of `spec`'s format for a vocabulary of `vocab`: tokenized, 2 bytes when
/// the ids fit 16 bits and 4 otherwise (Megatron-LM's indexed dataset picks uint16 below a vocab
/// of 65,500, else int32); raw text, 4 bytes (ASSUMPTION: OpenAI's rule of thumb, a token is about
/// 4 characters of English text). An explicit `bytes_per_token` wins.
inline Bytes data_bytes_per_token(const DataSpec& spec, long vocab) {
  if (spec.bytes_per_token.value() > 0) return spec.bytes_per_token;
  if (spec.format == DataFormat::RAW) return Bytes(4);
  return Bytes(vocab < 65500 ? 2 : 4);
}

/// CPU seconds of one sample of `bytes` stored bytes on one worker core: raw text at 20 ns a byte
/// (HuggingFace tokenizers' README: "less than 20 seconds to tokenize a GB of text on a server's
/// CPU"; ASSUMPTION: on one core); tokenized, 20 us (ASSUMPTION: reading a memory-mapped sample
/// and building its masks and positions; no published figure). An explicit value wins.
inline Seconds data_cpu_per_sample(const DataSpec& spec, Bytes bytes) {
  if (spec.cpu_per_sample.value() > 0) return spec.cpu_per_sample;
  if (spec.format == DataFormat::RAW) return Seconds(bytes.value() * 20e-9);
  return Seconds(20e-6);
}

} // namespace odyssey
