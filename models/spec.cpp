// Names of the workload enums, spelled as the scenario YAML spells them.
#include "models/spec.hpp"

namespace odyssey {

const char* to_string(Activation a) {
  switch (a) {
  case Activation::GELU: return "gelu";
  case Activation::SWIGLU: return "swiglu";
  }
  return "?";
}

const char* to_string(Precision p) {
  switch (p) {
  case Precision::FP32: return "fp32";
  case Precision::FP16: return "fp16";
  case Precision::BF16: return "bf16";
  case Precision::FP8: return "fp8";
  }
  return "?";
}

const char* to_string(PipelineScheduleKind s) {
  switch (s) {
  case PipelineScheduleKind::GPIPE: return "gpipe";
  case PipelineScheduleKind::ONE_F_ONE_B: return "1f1b";
  case PipelineScheduleKind::INTERLEAVED_1F1B: return "interleaved-1f1b";
  case PipelineScheduleKind::ZERO_BUBBLE: return "zero-bubble";
  }
  return "?";
}

const char* to_string(Recompute r) {
  switch (r) {
  case Recompute::NONE: return "none";
  case Recompute::SELECTIVE: return "selective";
  case Recompute::FULL: return "full";
  }
  return "?";
}

const char* to_string(Fidelity f) {
  switch (f) {
  case Fidelity::FULL: return "full";
  case Fidelity::FAST: return "fast";
  }
  return "?";
}

const char* to_string(Zero3Unit u) {
  switch (u) {
  case Zero3Unit::LAYER: return "layer";
  case Zero3Unit::BUCKET: return "bucket";
  }
  return "?";
}

const char* to_string(Fp8Recipe r) {
  switch (r) {
  case Fp8Recipe::DELAYED: return "delayed";
  case Fp8Recipe::CURRENT: return "current";
  }
  return "?";
}

const char* to_string(Framework f) {
  switch (f) {
  case Framework::MEGATRON_LM: return "megatron-lm";
  case Framework::DEEPSPEED: return "deepspeed";
  case Framework::PYTORCH_FSDP: return "pytorch-fsdp";
  }
  return "?";
}

const char* to_string(AttentionKernel k) {
  switch (k) {
  case AttentionKernel::NEWEST: return "newest";
  case AttentionKernel::FLASH_ATTENTION_2: return "flash-attention-2";
  case AttentionKernel::FLASH_ATTENTION_TRITON: return "flash-attention-triton";
  }
  return "newest";
}

const char* to_string(OffloadDevice d) {
  switch (d) {
  case OffloadDevice::NONE: return "none";
  case OffloadDevice::CPU: return "cpu";
  case OffloadDevice::NVME: return "nvme";
  }
  return "none";
}

} // namespace odyssey
