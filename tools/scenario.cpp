// Scenario loading. Every key is declared once, in one of three tables (machine, model, scenario),
// with its type, default, help text and its parse and render functions (SST's ELI parameter
// documentation): the machine's in topologies/machine_schema, the model's in models/model_schema,
// the scenario's here. The same tables drive parsing, `--set` overrides, `render_scenario` and
// `render_schema`. Cross-field rules run after everything is parsed, at the most relevant key.
#include "tools/scenario.hpp"

#include <algorithm>
#include <array>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "calibration/profile.hpp"
#include "models/input/diagnostics.hpp"
#include "models/input/schema.hpp"
#include "models/input/units_parse.hpp"
#include "models/input/yaml_reader.hpp"
#include "models/model_schema.hpp"
#include "models/strategy.hpp"
#include "topologies/machine_schema.hpp"

namespace odyssey {

SourceLocation Scenario::at(std::string_view key) const {
  const auto it = where.find(key);
  return it != where.end() ? it->second : SourceLocation{.file = file};
}

namespace {

namespace fs = std::filesystem;

/// A count of parameters (ZeRO-3 bucket and live limits): a number of at least 1.
double parameter_count(const YamlValue& v) {
  const double n = v.as_number();
  if (!(n >= 1)) v.fail(fmt::format("must be at least 1 parameter, got '{}'", v.as_string()));
  return n;
}

/// Where ZeRO-Offload keeps a kind of model state.
OffloadDevice offload_device(const YamlValue& v) {
  return v.as_enum<OffloadDevice>(
      {{"none", OffloadDevice::NONE}, {"cpu", OffloadDevice::CPU}, {"nvme", OffloadDevice::NVME}});
}

// ---- loading state ------------------------------------------------------------------------------

/// Everything the loader knows while it works: the scenario so far (with where each key was
/// written) and whether dp is `auto`.
struct Draft {
  Scenario scenario;
  const LoadOptions* options = nullptr;
  fs::path base_dir; ///< the scenario file's folder: relative machine and profile paths start here
  bool dp_auto = false;

  [[nodiscard]] SourceLocation at(std::string_view key) const { return scenario.at(key); }
  [[noreturn]] void fail(std::string_view key, const std::string& message) const {
    throw InputError(at(key), std::string(key), message);
  }
};

// ---- the generic walker -------------------------------------------------------------------------

/// The distinct next segments of the table's keys below `prefix` ("" or "server."), in table order.
template <class T>
std::vector<std::string> children(std::span<const Field<T>> table, std::string_view prefix) {
  std::vector<std::string> out;
  for (const auto& f : table) {
    if (!f.key.starts_with(prefix)) continue;
    const std::string_view rest = f.key.substr(prefix.size());
    const std::string next(rest.substr(0, rest.find('.')));
    if (std::find(out.begin(), out.end(), next) == out.end()) out.push_back(next);
  }
  return out;
}

template <class T> const Field<T>* find_field(std::span<const Field<T>> table, std::string_view key) {
  for (const auto& f : table) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

/// Applies every key of `map` through `table`. `section` prefixes the keys recorded in `where`
/// ("machine", "model" or "" for the scenario table); `extra` keys are allowed and left to the caller.
template <class T>
void apply_mapping(const YamlValue& map, std::span<const Field<T>> table, const std::string& prefix,
                   T& target, std::set<std::string>& given, Draft& draft, std::string_view section,
                   const std::vector<std::string>& extra = {}) {
  std::vector<std::string> allowed = children(table, prefix);
  allowed.insert(allowed.end(), extra.begin(), extra.end());
  map.check_keys(allowed);
  for (const auto& [key, value] : map.entries()) {
    if (prefix.empty() && std::find(extra.begin(), extra.end(), key) != extra.end()) continue;
    const std::string full = prefix + key;
    if (const Field<T>* field = find_field(table, full)) {
      field->parse(target, value);
      given.insert(full);
      draft.scenario.where[section.empty() ? full : fmt::format("{}.{}", section, full)] = value.where();
    } else {
      apply_mapping(value, table, full + ".", target, given, draft, section);
    }
  }
}

template <class T>
void require_given(std::span<const Field<T>> table, const std::set<std::string>& given, const YamlValue& at) {
  for (const auto& f : table) {
    if (f.default_text == REQUIRED && !given.contains(std::string(f.key)))
      at.fail(fmt::format("missing required key '{}'", f.key));
  }
}

// ---- presets ------------------------------------------------------------------------------------

std::vector<std::string> list_presets(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".yaml") names.push_back(it->path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

/// Whether a file exists; a name the file system cannot even look up (too long, say) does not.
/// A readable file: a folder of that name does not count (it opens, then fails when read).
bool file_exists(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool looks_like_path(const std::string& s) {
  return s.find('/') != std::string::npos || s.ends_with(".yaml");
}

/// A file named by the user: as given when it exists, else relative to the scenario's folder.
std::string resolve_path(const Draft& draft, const std::string& name) {
  if (file_exists(name) || fs::path(name).is_absolute()) return name;
  const fs::path beside = draft.base_dir / name;
  return file_exists(beside) ? beside.string() : name;
}

/// The file behind a preset name or a path given at `v`; `kind` is "machine" or "model".
std::string preset_file(const Draft& draft, const YamlValue& v, const std::string& kind,
                        const std::string& folder) {
  const std::string name = v.as_string();
  if (looks_like_path(name)) {
    const std::string path = resolve_path(draft, name);
    if (!file_exists(path)) v.fail(fmt::format("cannot open {} file '{}'", kind, name));
    return path;
  }
  const fs::path dir = fs::path(draft.options->data_dir) / folder;
  const fs::path file = dir / (name + ".yaml");
  if (file_exists(file)) return file.string();
  const std::vector<std::string> available = list_presets(dir);
  std::string list;
  for (const auto& p : available) list += (list.empty() ? "" : ", ") + p;
  const std::string suggestion = did_you_mean(name, available);
  if (!suggestion.empty())
    v.fail(fmt::format("unknown {} preset '{}' (did you mean '{}'? available: {})", kind, name, suggestion,
                       list));
  v.fail(fmt::format("unknown {} preset '{}' (available: {})", kind, name, list.empty() ? "none" : list));
}

template <class T>
T load_preset(Draft& draft, const YamlValue& name, const std::string& kind, const std::string& folder,
              std::span<const Field<T>> table) {
  const std::string file = preset_file(draft, name, kind, folder);
  const YamlValue root = load_yaml_file(file);
  root.require_map();
  T spec{};
  std::set<std::string> given;
  apply_mapping(root, table, "", spec, given, draft, kind);
  require_given(table, given, root);
  if (!given.contains("name")) spec.name = name.as_string();
  return spec;
}

/// `machine:` or `model:` — a preset name, a file path, or a mapping with an optional `preset:`
/// and overrides of any key.
template <class T>
T load_section(Draft& draft, const YamlValue& v, const std::string& kind, const std::string& folder,
               std::span<const Field<T>> table, const std::string& default_name) {
  if (v.is_scalar()) return load_preset(draft, v, kind, folder, table);
  if (!v.is_map()) v.fail(fmt::format("expected a {} preset name, a file or a mapping", kind));
  T spec{};
  std::set<std::string> given;
  const auto preset = v.get("preset");
  if (preset) spec = load_preset(draft, *preset, kind, folder, table);
  apply_mapping(v, table, "", spec, given, draft, kind, {"preset"});
  if (!preset) {
    require_given(table, given, v);
    if (!given.contains("name")) spec.name = default_name;
  }
  return spec;
}

void parse_machine(Draft& d, const YamlValue& v) {
  d.scenario.machine =
      load_section(d, v, "machine", "topologies/presets", std::span(machine_fields()), "custom");
}
void parse_model(Draft& d, const YamlValue& v) {
  d.scenario.model = load_section(d, v, "model", "models/presets", std::span(model_fields()), "custom");
}

// ---- the scenario table -------------------------------------------------------------------------

const std::vector<Field<Draft>>& scenario_fields() {
  static const std::vector<Field<Draft>> fields{
      {"name", "string", "file name", "scenario name used in reports",
       [](Draft& d, const YamlValue& v) { d.scenario.name = v.as_string(); },
       [](const Draft& d) { return yaml_string(d.scenario.name); }},
      {"machine", "preset | path | mapping", REQUIRED,
       "machine preset (topologies/presets), a machine YAML file, or {preset: NAME, KEY: VALUE...}",
       parse_machine, [](const Draft&) { return std::string(); }},
      {"model", "preset | mapping", REQUIRED,
       "model preset (models/presets), or {preset: NAME, KEY: VALUE...} or the shape", parse_model,
       [](const Draft&) { return std::string(); }},
      {"training.global_batch", "positive integer", REQUIRED, "sequences per iteration",
       [](Draft& d, const YamlValue& v) { d.scenario.training.global_batch = positive_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.training.global_batch); }},
      {"training.micro_batch", "positive integer", "1", "sequences per micro-batch",
       [](Draft& d, const YamlValue& v) { d.scenario.training.micro_batch = positive_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.training.micro_batch); }},
      {"training.precision", "fp32 | fp16 | bf16 | fp8", "fp16", "compute precision",
       [](Draft& d, const YamlValue& v) {
         d.scenario.training.precision = v.as_enum<Precision>({{"fp32", Precision::FP32},
                                                               {"fp16", Precision::FP16},
                                                               {"bf16", Precision::BF16},
                                                               {"fp8", Precision::FP8}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.training.precision)); }},
      {"training.tokens", "number | none", "none",
       "token budget for time-to-train (a plain count, e.g. 300e9)",
       [](Draft& d, const YamlValue& v) {
         if (v.is_null() || v.as_string() == "none") {
           d.scenario.training.tokens.reset();
           return;
         }
         const double tokens = v.as_number();
         if (!(tokens > 0)) v.fail(fmt::format("must be greater than zero, got '{}'", v.as_string()));
         d.scenario.training.tokens = tokens;
       },
       [](const Draft& d) {
         return d.scenario.training.tokens ? fmt::format("{:g}", *d.scenario.training.tokens)
                                           : std::string("none");
       }},
      {"training.flash_attention", "bool", "true",
       "fused memory-efficient attention; Megatron-LM 2021 runs predate it and set false",
       [](Draft& d, const YamlValue& v) { d.scenario.training.flash_attention = v.as_bool(); },
       [](const Draft& d) { return yaml_bool(d.scenario.training.flash_attention); }},
      {"training.attention_kernel", "newest | flash-attention-2 | flash-attention-triton", "newest",
       "fused attention kernel: the newest the GPU's profile prices (FlashAttention-3 on Hopper), "
       "FlashAttention-2, which Hopper runs trained before FlashAttention-3 (July 2024) used, or "
       "FlashAttention's Triton kernel (MosaicML's MPT, 2023: attn_impl triton)",
       [](Draft& d, const YamlValue& v) {
         d.scenario.training.attention_kernel = v.as_enum<AttentionKernel>(
             {{"newest", AttentionKernel::NEWEST},
              {"flash-attention-2", AttentionKernel::FLASH_ATTENTION_2},
              {"flash-attention-triton", AttentionKernel::FLASH_ATTENTION_TRITON}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.training.attention_kernel)); }},
      {"training.gradient_accumulation_fusion", "bool", "true",
       "weight-gradient GEMMs accumulate into the fp32 main gradient (Megatron-LM 2022+); false: a "
       "separate add per weight every micro-batch, as Megatron-LM 2021 ran",
       [](Draft& d, const YamlValue& v) { d.scenario.training.gradient_accumulation_fusion = v.as_bool(); },
       [](const Draft& d) { return yaml_bool(d.scenario.training.gradient_accumulation_fusion); }},
      {"training.grad_reduce_dtype", "auto | fp32 | bf16", "auto",
       "main gradients' dtype, accumulated and reduced across data-parallel ranks; auto: fp16 for fp16 "
       "training, else fp32; bf16: Megatron-core without grad_reduce_in_fp32 (NeMo optim.grad_sync_dtype: "
       "bf16)",
       [](Draft& d, const YamlValue& v) {
         if (v.as_string() == "auto") {
           d.scenario.training.grad_reduce_dtype.reset();
           return;
         }
         d.scenario.training.grad_reduce_dtype =
             v.as_enum<Precision>({{"fp32", Precision::FP32}, {"bf16", Precision::BF16}});
       },
       [](const Draft& d) {
         return d.scenario.training.grad_reduce_dtype
                    ? std::string(to_string(*d.scenario.training.grad_reduce_dtype))
                    : std::string("auto");
       }},
      {"training.fp8_recipe", "delayed | current", "delayed",
       "FP8 scaling: delayed (the amax history, recorded as the cast runs) or current (each tensor's "
       "own amax, a pass over it before its cast: Transformer Engine's Float8CurrentScaling)",
       [](Draft& d, const YamlValue& v) {
         d.scenario.training.fp8_recipe =
             v.as_enum<Fp8Recipe>({{"delayed", Fp8Recipe::DELAYED}, {"current", Fp8Recipe::CURRENT}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.training.fp8_recipe)); }},
      {"training.fp8_param_gather", "bool", "false",
       "FP8 training with FP8 primary weights (Megatron-core --fp8-param-gather): weights held and "
       "all-gathered in one byte, only their transpose cached",
       [](Draft& d, const YamlValue& v) { d.scenario.training.fp8_param_gather = v.as_bool(); },
       [](const Draft& d) { return yaml_bool(d.scenario.training.fp8_param_gather); }},
      {"training.framework", "megatron-lm | deepspeed | pytorch-fsdp", "megatron-lm",
       "the framework's own pass over each weight gradient where gradient_accumulation_fusion is false: "
       "megatron-lm main_grad += grad; deepspeed (BF16 optimizer) an fp32 copy, then the add; "
       "pytorch-fsdp the cast to the reduce dtype and the pre-division before each reduce-scatter",
       [](Draft& d, const YamlValue& v) {
         d.scenario.training.framework = v.as_enum<Framework>({{"megatron-lm", Framework::MEGATRON_LM},
                                                               {"deepspeed", Framework::DEEPSPEED},
                                                               {"pytorch-fsdp", Framework::PYTORCH_FSDP}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.training.framework)); }},
      {"parallelism.tp", "positive integer", "1", "tensor-parallel degree",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.tp = positive_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.parallelism.tp); }},
      {"parallelism.pp", "positive integer", "1", "pipeline-parallel degree (stages)",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.pp = positive_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.parallelism.pp); }},
      {"parallelism.dp", "positive integer | auto", "1",
       "data-parallel replicas; auto: as many as fit the machine and divide global_batch / micro_batch",
       [](Draft& d, const YamlValue& v) {
         d.dp_auto = v.is_scalar() && v.as_string() == "auto";
         if (!d.dp_auto) d.scenario.parallelism.dp = positive_int(v);
       },
       [](const Draft& d) { return std::to_string(d.scenario.parallelism.dp); }},
      {"parallelism.cp", "positive integer", "1",
       "context-parallel degree: ranks the sequence is split across",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.cp = positive_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.parallelism.cp); }},
      {"parallelism.cp_kind", "ring | all-gather", "ring",
       "context-parallel attention: K/V passed around a ring, or all-gathered before attention (Llama 3)",
       [](Draft& d, const YamlValue& v) {
         d.scenario.parallelism.cp_kind = v.as_enum<ContextParallelKind>(
             {{"ring", ContextParallelKind::RING}, {"all-gather", ContextParallelKind::ALL_GATHER}});
       },
       [](const Draft& d) {
         return std::string(d.scenario.parallelism.cp_kind == ContextParallelKind::RING ? "ring"
                                                                                        : "all-gather");
       }},
      {"parallelism.ep", "positive integer", "1",
       "expert-parallel degree: ranks of the data-parallel group the experts are spread over",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.ep = positive_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.parallelism.ep); }},
      {"parallelism.sequence_parallel", "bool", "false",
       "shard norms and dropout along the sequence across tp",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.sequence_parallel = v.as_bool(); },
       [](const Draft& d) { return yaml_bool(d.scenario.parallelism.sequence_parallel); }},
      {"parallelism.schedule", "gpipe | 1f1b | interleaved-1f1b | zero-bubble", "1f1b", "pipeline schedule",
       [](Draft& d, const YamlValue& v) {
         d.scenario.parallelism.schedule =
             v.as_enum<PipelineScheduleKind>({{"gpipe", PipelineScheduleKind::GPIPE},
                                              {"1f1b", PipelineScheduleKind::ONE_F_ONE_B},
                                              {"interleaved-1f1b", PipelineScheduleKind::INTERLEAVED_1F1B},
                                              {"zero-bubble", PipelineScheduleKind::ZERO_BUBBLE}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.parallelism.schedule)); }},
      {"parallelism.virtual_stages", "positive integer", "1",
       "model chunks per pipeline stage (interleaved-1f1b)",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.virtual_stages = positive_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.parallelism.virtual_stages); }},
      {"parallelism.first_stage_layers", "integer >= 0", "0",
       "transformer layers on pipeline stage 0, which also holds the embedding; 0: an even split",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.first_stage_layers = count_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.parallelism.first_stage_layers); }},
      {"parallelism.last_stage_layers", "integer >= 0", "0",
       "transformer layers on the last pipeline stage, which also holds the LM head and loss; 0: an even "
       "split",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.last_stage_layers = count_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.parallelism.last_stage_layers); }},
      {"parallelism.zero", "0 | 1 | 2 | 3", "0",
       "ZeRO stage: 1 optimizer, 2 + gradients, 3 + parameters sharded",
       [](Draft& d, const YamlValue& v) {
         const long zero = v.as_count();
         if (zero > 3) v.fail(fmt::format("must be 0, 1, 2 or 3, got {}", zero));
         d.scenario.parallelism.zero = static_cast<int>(zero);
       },
       [](const Draft& d) { return std::to_string(d.scenario.parallelism.zero); }},
      {"parallelism.recompute", "none | selective | full", "none", "activation recomputation",
       [](Draft& d, const YamlValue& v) {
         d.scenario.parallelism.recompute = v.as_enum<Recompute>(
             {{"none", Recompute::NONE}, {"selective", Recompute::SELECTIVE}, {"full", Recompute::FULL}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.parallelism.recompute)); }},
      {"parallelism.overlap.dp", "bool", "true", "overlap the gradient reduction with the backward pass",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.dp_overlap = v.as_bool(); },
       [](const Draft& d) { return yaml_bool(d.scenario.parallelism.dp_overlap); }},
      {"parallelism.overlap.tp", "bool", "false",
       "overlap tensor-parallel communication with the GEMMs (userbuffers-style)",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.tp_overlap = v.as_bool(); },
       [](const Draft& d) { return yaml_bool(d.scenario.parallelism.tp_overlap); }},
      {"parallelism.overlap.pp", "bool", "false", "overlap pipeline send/recv with compute",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.pp_overlap = v.as_bool(); },
       [](const Draft& d) { return yaml_bool(d.scenario.parallelism.pp_overlap); }},
      {"parallelism.overlap.zero", "bool", "true", "prefetch ZeRO-3 parameter all-gathers during compute",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.zero_overlap = v.as_bool(); },
       [](const Draft& d) { return yaml_bool(d.scenario.parallelism.zero_overlap); }},
      {"parallelism.offload.optimizer", "none | cpu | nvme", "none",
       "ZeRO-Offload: optimizer states and their gradient partition in host memory (cpu) or on local NVMe "
       "(nvme, ZeRO-Infinity); the Adam step runs on the server's host cores (CPU-Adam)",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.offload.optimizer = offload_device(v); },
       [](const Draft& d) { return std::string(to_string(d.scenario.parallelism.offload.optimizer)); }},
      {"parallelism.offload.params", "none | cpu | nvme", "none",
       "ZeRO-Infinity: 16-bit parameters in host memory or on NVMe, fetched for every forward and backward "
       "(zero: 3)",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.offload.params = offload_device(v); },
       [](const Draft& d) { return std::string(to_string(d.scenario.parallelism.offload.params)); }},
      {"parallelism.offload.delayed_update", "bool", "false",
       "one-step delayed parameter update (ZeRO-Offload sec. 4.2): the host's optimizer step overlaps the "
       "next step's forward and backward",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.offload.delayed_update = v.as_bool(); },
       [](const Draft& d) { return yaml_bool(d.scenario.parallelism.offload.delayed_update); }},
      {"parallelism.pipeline_sync", "bool", "false",
       "blocking pipeline send/recv followed by a device synchronize, as Megatron-LM 2021's "
       "p2p_communication ran",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.pipeline_sync = v.as_bool(); },
       [](const Draft& d) { return yaml_bool(d.scenario.parallelism.pipeline_sync); }},
      {"parallelism.zero3_unit", "layer | bucket", "bucket",
       "what ZeRO-3 gathers at once and frees after use: one layer (PyTorch FSDP, one wrapped unit per "
       "layer; its gradients reduce-scattered per layer) or a bucket of zero3_bucket parameters "
       "(DeepSpeed ZeRO-3)",
       [](Draft& d, const YamlValue& v) {
         d.scenario.parallelism.zero3_unit =
             v.as_enum<Zero3Unit>({{"layer", Zero3Unit::LAYER}, {"bucket", Zero3Unit::BUCKET}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.parallelism.zero3_unit)); }},
      {"parallelism.zero3_bucket", "number", "5e7",
       "parameters one ZeRO-3 bucket gathers (DeepSpeed stage3_prefetch_bucket_size, default 5e7)",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.zero3_bucket = parameter_count(v); },
       [](const Draft& d) { return fmt::format("{:g}", d.scenario.parallelism.zero3_bucket); }},
      {"parallelism.zero3_max_live", "number", "1e9",
       "gathered parameters ZeRO-3 buckets keep live at most (DeepSpeed stage3_max_live_parameters, "
       "default 1e9)",
       [](Draft& d, const YamlValue& v) { d.scenario.parallelism.zero3_max_live = parameter_count(v); },
       [](const Draft& d) { return fmt::format("{:g}", d.scenario.parallelism.zero3_max_live); }},
      {"parallelism.dp_bucket", "bytes | auto", "auto",
       "gradient bucket size; auto: Megatron-core's max(40M, 1M x dp) parameters, DeepSpeed's 5e8 for zero 2 "
       "and 3",
       [](Draft& d, const YamlValue& v) {
         d.scenario.parallelism.dp_bucket =
             v.is_scalar() && v.as_string() == "auto" ? Bytes(0) : v.as_bytes();
       },
       [](const Draft& d) {
         return d.scenario.parallelism.dp_bucket.value() > 0
                    ? quoted_quantity(d.scenario.parallelism.dp_bucket.value(), Dimension::BYTES)
                    : std::string("auto");
       }},
      {"parallelism.placement", "tp-in-server | dp-across-rails | tp-across-servers", "tp-in-server",
       "ranks on GPUs: TP inside a server (Megatron's order); dp-across-rails: data-parallel peers on "
       "different "
       "rails; tp-across-servers: TP groups spread over servers",
       [](Draft& d, const YamlValue& v) {
         d.scenario.placement = v.as_enum<Placement>({{"tp-in-server", Placement::TP_IN_SERVER},
                                                      {"dp-across-rails", Placement::DP_ACROSS_RAILS},
                                                      {"tp-across-servers", Placement::TP_ACROSS_SERVERS}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.placement)); }},
      {"calibration", "auto | path", "auto",
       "calibration profile; auto: the best profile for the machine's GPU",
       [](Draft& d, const YamlValue& v) { d.scenario.calibration = v.as_string(); },
       [](const Draft& d) { return yaml_string(d.scenario.calibration); }},
      {"simulation.fidelity", "full | fast", "full",
       "full: every GPU simulated; fast: symmetric ranks folded",
       [](Draft& d, const YamlValue& v) {
         d.scenario.simulation.fidelity =
             v.as_enum<Fidelity>({{"full", Fidelity::FULL}, {"fast", Fidelity::FAST}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.simulation.fidelity)); }},
      {"simulation.seed", "integer >= 0", "1", "seed of the run's one random generator",
       [](Draft& d, const YamlValue& v) {
         d.scenario.simulation.seed = static_cast<std::uint64_t>(v.as_count());
       },
       [](const Draft& d) { return std::to_string(d.scenario.simulation.seed); }},
      {"simulation.trials", "positive integer", "1000",
       "Monte Carlo trials of the whole run with failures (time to train P50/P90, goodput)",
       [](Draft& d, const YamlValue& v) { d.scenario.simulation.trials = positive_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.simulation.trials); }},
      {"checkpoint.interval", "time", "\"30 min\"",
       "training time between two checkpoints (ASSUMPTION default)",
       [](Draft& d, const YamlValue& v) { d.scenario.checkpoint.interval = v.as_seconds(); },
       [](const Draft& d) {
         return quoted_quantity(d.scenario.checkpoint.interval.value(), Dimension::TIME);
       }},
      {"checkpoint.mode", "sync | async", "sync",
       "sync: training stalls while the checkpoint is written; async: it trains on, and the checkpoint "
       "counts once written",
       [](Draft& d, const YamlValue& v) {
         d.scenario.checkpoint.mode =
             v.as_enum<CheckpointMode>({{"sync", CheckpointMode::SYNC}, {"async", CheckpointMode::ASYNC}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.checkpoint.mode)); }},
      {"checkpoint.first_level", "host-memory | nvme", "host-memory",
       "async: where the copy lands before it drains to storage (nvme: the servers' local NVMe, "
       "server.nvme)",
       [](Draft& d, const YamlValue& v) {
         d.scenario.checkpoint.first_level = v.as_enum<CheckpointLevel>(
             {{"host-memory", CheckpointLevel::HOST_MEMORY}, {"nvme", CheckpointLevel::NVME}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.checkpoint.first_level)); }},
      {"checkpoint.drain_bandwidth", "byte rate | none", "none",
       "async: cap on each server's drain from the first level to storage (none: as fast as its path allows)",
       [](Draft& d, const YamlValue& v) {
         d.scenario.checkpoint.drain_bandwidth =
             v.is_scalar() && v.as_string() == "none" ? BytesPerSecond(0) : v.as_byte_rate();
       },
       [](const Draft& d) {
         const double bw = d.scenario.checkpoint.drain_bandwidth.value();
         return bw > 0 ? quoted_quantity(bw, Dimension::BYTE_RATE) : std::string("none");
       }},
      {"data.format", "tokenized | raw", "tokenized",
       "tokenized: pre-packed token ids (little CPU work); raw: text the loader tokenises",
       [](Draft& d, const YamlValue& v) {
         d.scenario.data.format =
             v.as_enum<DataFormat>({{"tokenized", DataFormat::TOKENIZED}, {"raw", DataFormat::RAW}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.data.format)); }},
      {"data.bytes_per_token", "bytes | auto", "auto",
       "stored bytes per token (auto: tokenized 2 B below a vocab of 65,500, else 4 B, as Megatron-LM "
       "stores ids; raw text 4 B, ASSUMPTION)",
       [](Draft& d, const YamlValue& v) {
         d.scenario.data.bytes_per_token = v.is_scalar() && v.as_string() == "auto" ? Bytes(0) : v.as_bytes();
       },
       [](const Draft& d) {
         return d.scenario.data.bytes_per_token.value() > 0
                    ? quoted_quantity(d.scenario.data.bytes_per_token.value(), Dimension::BYTES)
                    : std::string("auto");
       }},
      {"data.cpu_per_sample", "time | auto", "auto",
       "CPU time of one sample on one loader worker core (auto: raw text 20 ns a byte, HuggingFace "
       "tokenizers' published rate; tokenized 20 us, ASSUMPTION)",
       [](Draft& d, const YamlValue& v) {
         d.scenario.data.cpu_per_sample =
             v.is_scalar() && v.as_string() == "auto" ? Seconds(0) : v.as_seconds();
       },
       [](const Draft& d) {
         return d.scenario.data.cpu_per_sample.value() > 0
                    ? quoted_quantity(d.scenario.data.cpu_per_sample.value(), Dimension::TIME)
                    : std::string("auto");
       }},
      {"data.workers", "positive integer", "16",
       "loader worker cores per loading server, or per CPU host with a data service (ASSUMPTION "
       "default: Megatron-LM's 2 per rank for 8 GPUs)",
       [](Draft& d, const YamlValue& v) { d.scenario.data.workers = positive_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.data.workers); }},
      {"data.prefetch", "positive integer", "2",
       "batches a loader keeps ready (PyTorch DataLoader's prefetch_factor default); absorbs jitter, "
       "not a steady shortfall",
       [](Draft& d, const YamlValue& v) { d.scenario.data.prefetch = positive_int(v); },
       [](const Draft& d) { return std::to_string(d.scenario.data.prefetch); }},
      {"data.service", "local | cpu-hosts", "local",
       "local: the GPU servers' host CPUs prepare the samples; cpu-hosts: the machine's CPU-only "
       "servers do and send them over the fabric",
       [](Draft& d, const YamlValue& v) {
         d.scenario.data.service =
             v.as_enum<DataService>({{"local", DataService::LOCAL}, {"cpu-hosts", DataService::CPU_HOSTS}});
       },
       [](const Draft& d) { return std::string(to_string(d.scenario.data.service)); }},
      {"recovery.detection", "time", "\"2 min\"",
       "from a failure to the job stopped (heartbeats, collective timeouts; ASSUMPTION default)",
       [](Draft& d, const YamlValue& v) { d.scenario.recovery.detection = v.as_seconds(); },
       [](const Draft& d) {
         return quoted_quantity(d.scenario.recovery.detection.value(), Dimension::TIME);
       }},
      {"recovery.restart", "time", "\"5 min\"",
       "job restart: scheduler, process start, NCCL communicators at scale (ASSUMPTION default)",
       [](Draft& d, const YamlValue& v) { d.scenario.recovery.restart = v.as_seconds(); },
       [](const Draft& d) { return quoted_quantity(d.scenario.recovery.restart.value(), Dimension::TIME); }},
      {"recovery.spares", "auto | integer >= 0", "auto",
       "hot spare servers that replace a failed one at once (auto: every server the job does not use); "
       "without one the job waits for machine.reliability.repair",
       [](Draft& d, const YamlValue& v) {
         d.scenario.recovery.spares = v.is_scalar() && v.as_string() == "auto" ? -1 : count_int(v);
       },
       [](const Draft& d) {
         return d.scenario.recovery.spares < 0 ? std::string("auto")
                                               : std::to_string(d.scenario.recovery.spares);
       }},
      {"nccl.algo", "NCCL_ALGO list", "all",
       "algorithms NCCL may use, as NCCL_ALGO: Ring, Tree, CollNetDirect, NVLS, NVLSTree, PAT; '^' excludes",
       [](Draft& d, const YamlValue& v) {
         try {
           d.scenario.nccl.algorithms = parse_algorithms(v.as_string());
         } catch (const std::invalid_argument& e) {
           v.fail(e.what());
         }
         if ((d.scenario.nccl.algorithms & (1U << static_cast<int>(Algorithm::RING))) == 0)
           v.fail("must allow Ring: it is NCCL's only algorithm for every collective and group, and NCCL "
                  "fails a "
                  "run with a collective no allowed algorithm can run");
       },
       [](const Draft& d) { return yaml_string(algorithms_text(d.scenario.nccl.algorithms)); }},
      {"nccl.proto", "NCCL_PROTO list", "all",
       "protocols NCCL may use, as NCCL_PROTO: LL, LL128, Simple; '^' excludes",
       [](Draft& d, const YamlValue& v) {
         try {
           d.scenario.nccl.protocols = parse_protocols(v.as_string());
         } catch (const std::invalid_argument& e) {
           v.fail(e.what());
         }
         if ((d.scenario.nccl.protocols & 7U) == 0) v.fail("excludes every protocol");
       },
       [](const Draft& d) { return yaml_string(protocols_text(d.scenario.nccl.protocols)); }},
  };
  return fields;
}

// ---- --set overrides ----------------------------------------------------------------------------

/// Finds the field `key` names inside `table`, failing with a did-you-mean on the first segment
/// that is not a key. `shown` is the key as the user wrote it (with its section).
template <class T>
const Field<T>& resolve_override(std::span<const Field<T>> table, std::string_view key,
                                 const std::string& shown, const SourceLocation& at) {
  std::string prefix;
  std::string_view rest = key;
  const std::string section(std::string_view(shown).substr(0, shown.size() - key.size()));
  while (true) {
    const std::string segment(rest.substr(0, rest.find('.')));
    const std::vector<std::string> names = children(table, prefix);
    if (std::find(names.begin(), names.end(), segment) == names.end()) {
      const std::string suggestion = did_you_mean(segment, names);
      const std::string path = section + prefix + segment;
      if (!suggestion.empty())
        throw InputError(at, path, fmt::format("unknown key '{}' (did you mean '{}'?)", segment, suggestion));
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      throw InputError(at, path, fmt::format("unknown key '{}' (expected one of {})", segment, list));
    }
    prefix += segment;
    if (const Field<T>* field = find_field(table, prefix)) {
      if (prefix.size() != key.size())
        throw InputError(at, shown,
                         fmt::format("'{}' is a single value and has no key '{}'", section + prefix,
                                     key.substr(prefix.size() + 1)));
      return *field;
    }
    if (prefix.size() >= key.size()) {
      std::string list;
      for (const auto& n : children(table, prefix + ".")) list += (list.empty() ? "" : ", ") + n;
      throw InputError(at, shown, fmt::format("is a group of keys; set one of them: {}", list));
    }
    prefix += '.';
    rest = key.substr(prefix.size());
  }
}

void apply_override(Draft& draft, const std::string& text) {
  const SourceLocation at{.file = "--set " + text};
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError(at, "", "expected KEY=VALUE, e.g. --set model.layers=48");
  const std::string key = text.substr(0, eq);
  const std::string value = text.substr(eq + 1);
  // Flow collections (`machine={preset: x, servers: 64}`) are YAML; anything else is one scalar.
  YAML::Node node;
  if (value.starts_with('{') || value.starts_with('[')) {
    try {
      node = YAML::Load(value);
    } catch (const YAML::ParserException& e) {
      throw InputError(at, key, e.msg);
    }
  } else {
    node = YAML::Node(value);
  }
  const YamlValue v(node, at.file, key);

  for (const std::string section : {"machine", "model"}) {
    if (!key.starts_with(section + ".")) continue;
    const std::string inner = key.substr(section.size() + 1);
    if (inner == "preset") {
      (section == "machine" ? parse_machine : parse_model)(draft, v);
    } else if (section == "machine") {
      resolve_override(std::span(machine_fields()), inner, key, at).parse(draft.scenario.machine, v);
    } else {
      resolve_override(std::span(model_fields()), inner, key, at).parse(draft.scenario.model, v);
    }
    draft.scenario.where[key] = at;
    return;
  }
  resolve_override(std::span(scenario_fields()), key, key, at).parse(draft, v);
  draft.scenario.where[key] = at;
}

// ---- cross-field rules --------------------------------------------------------------------------

/// The largest dp that fits the machine, divides the batch and is a multiple of ep (and,
/// interleaved, keeps the micro-batches per replica a multiple of pp); 0 when even one replica does
/// not fit.
int auto_dp(const Scenario& s) {
  const auto& p = s.parallelism;
  const long per_replica = static_cast<long>(p.tp) * p.pp * p.cp;
  const long fit = s.machine.total_gpus() / per_replica;
  const long batch = s.training.global_batch;
  const long mb = s.training.micro_batch;
  const bool interleaved = p.schedule == PipelineScheduleKind::INTERLEAVED_1F1B;
  long fallback = 0;
  for (long dp = std::min<long>(fit, batch); dp >= 1; --dp) {
    if (batch % (mb * dp) != 0 || dp % p.ep != 0) continue;
    if (!interleaved || (batch / (mb * dp)) % p.pp == 0) return static_cast<int>(dp);
    if (fallback == 0) fallback = dp;
  }
  return static_cast<int>(fallback > 0 ? fallback : std::min<long>(fit, 1));
}

void check_moe(const Draft& d) {
  const ModelSpec& m = d.scenario.model;
  const MoeSpec& e = *m.moe;
  if (e.experts == 0) {
    const auto given = d.scenario.where.lower_bound(std::string_view("model.moe."));
    throw InputError(given != d.scenario.where.end() ? given->second : d.at("model"), "model.moe",
                     "missing required key 'experts'");
  }
}

/// The loader's workers against the cores of the hosts they run on.
void check_data(Draft& d) {
  const Scenario& s = d.scenario;
  const int workers = s.data.workers;
  if (s.data.service == DataService::CPU_HOSTS) {
    if (s.machine.cpu_hosts.count == 0)
      d.fail(
          "data.service",
          fmt::format("machine '{}' has no CPU-only servers (machine.cpu_hosts.count is 0)", s.machine.name));
    if (workers > s.machine.cpu_hosts.cores_per_host)
      d.fail("data.workers",
             fmt::format("{} loader workers per CPU host, but a CPU host of '{}' has {} cores", workers,
                         s.machine.name, s.machine.cpu_hosts.cores_per_host));
  } else if (s.machine.server.cpu_cores > 0 && workers > s.machine.server.cpu_cores) {
    d.fail("data.workers", fmt::format("{} loader workers per server, but a server of '{}' has {} CPU cores "
                                       "(machine.server.cpu_cores)",
                                       workers, s.machine.name, s.machine.server.cpu_cores));
  }
}

/// The two-level checkpoint's keys against the mode and the servers' NVMe.
void check_checkpoint(Draft& d) {
  const Scenario& s = d.scenario;
  const CheckpointSpec& c = s.checkpoint;
  if (c.mode == CheckpointMode::SYNC) {
    if (c.first_level != CheckpointLevel::HOST_MEMORY)
      d.fail("checkpoint.first_level", "a sync checkpoint writes straight to storage: a first level needs "
                                       "checkpoint.mode: async");
    if (c.drain_bandwidth.value() > 0)
      d.fail("checkpoint.drain_bandwidth",
             "a sync checkpoint writes straight to storage: a drain needs checkpoint.mode: async");
  }
  if (c.first_level == CheckpointLevel::NVME &&
      (!(s.machine.server.host.nvme.value() > 0) || !(s.machine.server.host.nvme_bandwidth.value() > 0)))
    d.fail("checkpoint.first_level",
           fmt::format("machine '{}' describes no local NVMe (machine.server.nvme and "
                       "machine.server.nvme_bandwidth)",
                       s.machine.name));
}

void check_scenario(Draft& d) {
  Scenario& s = d.scenario;
  try {
    check_machine(s.machine);
  } catch (const InputError& e) {
    const std::string key = "machine." + e.key_path();
    throw InputError(d.at(key), key, e.message());
  }

  if (s.model.moe) check_moe(d);
  if (const auto p = check_model(s.model)) d.fail(p->key, p->message);
  check_data(d);

  if (d.dp_auto) s.parallelism.dp = std::max(auto_dp(s), 1);
  if (const auto p = check_strategy(s.model, s.training, s.parallelism, job_capacity(s.machine),
                                    d.dp_auto ? DpChoice::AUTO : DpChoice::GIVEN))
    d.fail(p->key, p->message);

  if (const auto p = check_offload(s.parallelism, host_resources(s.machine, s.parallelism.gpus())))
    d.fail(p->key, p->message);
  check_checkpoint(d);

  const long used = job_components(s.machine, s.parallelism.gpus()).servers;
  if (s.recovery.spares > s.machine.servers - used)
    d.fail(
        "recovery.spares",
        fmt::format("{} spare servers, but the machine has {} servers and the job uses {}: at most {} spares",
                    s.recovery.spares, s.machine.servers, used, s.machine.servers - used));
}

void resolve_calibration(Draft& d) {
  Scenario& s = d.scenario;
  s.host_calibration = (fs::path(d.options->data_dir) / HOST_PROFILE).string();
  s.published_mfu = (fs::path(d.options->data_dir) / PUBLISHED_MFU_TABLE).string();
  if (s.calibration == "auto") {
    try {
      s.calibration = find_profile((fs::path(d.options->data_dir) / "calibration" / "profiles").string(),
                                   s.machine.gpu.type);
    } catch (const InputError& e) {
      if (e.where().line > 0) throw;
      throw InputError(d.at("calibration"), "calibration", e.message());
    }
    return;
  }
  const std::string path = resolve_path(d, s.calibration);
  if (!file_exists(path)) d.fail("calibration", fmt::format("cannot open profile '{}'", s.calibration));
  s.calibration = path;
}

// ---- rendering ----------------------------------------------------------------------------------

/// Writes dotted keys as nested YAML, opening each group once (keys arrive grouped).
std::string emit_nested(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out;
  std::vector<std::string> open;
  for (const auto& [key, value] : entries) {
    std::vector<std::string> parts;
    for (std::size_t start = 0;;) {
      const std::size_t dot = key.find('.', start);
      parts.push_back(key.substr(start, dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    std::size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common]) ++common;
    open.resize(common);
    for (std::size_t i = common; i + 1 < parts.size(); ++i) {
      out += fmt::format("{:{}}{}:\n", "", 2 * i, parts[i]);
      open.push_back(parts[i]);
    }
    out += fmt::format("{:{}}{}: {}\n", "", 2 * (parts.size() - 1), parts.back(), value);
  }
  return out;
}

template <class T>
void add_rows(std::vector<std::array<std::string, 4>>& rows, std::span<const Field<T>> table,
              const std::string& prefix) {
  for (const auto& f : table) {
    rows.push_back(
        {prefix + std::string(f.key), std::string(f.type), std::string(f.default_text), std::string(f.help)});
  }
}

} // namespace

namespace {

/// Reads the scenario file and applies the overrides: every key and value checked on its own.
Draft parse_scenario(const std::string& path, const LoadOptions& options) {
  Draft draft;
  draft.options = &options;
  draft.scenario.file = path;
  draft.scenario.name = fs::path(path).stem().string();
  draft.base_dir = fs::path(path).parent_path();

  const YamlValue root = load_yaml_file(path);
  root.require_map();
  std::set<std::string> given;
  apply_mapping(root, std::span(scenario_fields()), "", draft, given, draft, "");
  require_given(std::span(scenario_fields()), given, root);

  for (const std::string& text : options.overrides) apply_override(draft, text);
  return draft;
}

} // namespace

void check_overrides(const std::string& path, const LoadOptions& options) {
  parse_scenario(path, options);
}

Scenario load_scenario(const std::string& path, const LoadOptions& options) {
  Draft draft = parse_scenario(path, options);
  ModelSpec& m = draft.scenario.model;
  if (m.kv_heads == 0) m.kv_heads = m.heads;
  if (m.ffn_hidden == 0) m.ffn_hidden = 4 * m.hidden;
  if (m.moe && m.moe->expert_ffn_hidden == 0) m.moe->expert_ffn_hidden = m.ffn_hidden;

  check_scenario(draft);
  resolve_calibration(draft);
  return draft.scenario;
}

MachineSpec load_machine(const std::string& machine, const LoadOptions& options) {
  Draft draft;
  draft.options = &options;
  draft.scenario.file = "--machine " + machine;
  draft.base_dir = fs::current_path();
  // A value from the command line has no line or column: errors read `--machine NAME: error: ...`.
  parse_machine(draft, YamlValue(YAML::Node(machine), draft.scenario.file, ""));
  for (const std::string& text : options.overrides) {
    if (!text.starts_with("machine."))
      throw InputError({.file = "--set " + text}, "", "only machine.* keys can be set here");
    apply_override(draft, text);
  }
  try {
    check_machine(draft.scenario.machine);
  } catch (const InputError& e) {
    const std::string key = "machine." + e.key_path();
    throw InputError(draft.at(key), key, e.message());
  }
  return draft.scenario.machine;
}

std::string render_scenario(const Scenario& scenario) {
  Draft draft;
  draft.scenario = scenario;
  std::vector<std::pair<std::string, std::string>> entries;
  for (const auto& f : scenario_fields()) {
    if (f.key == "machine") {
      for (const auto& mf : machine_fields())
        entries.emplace_back("machine." + std::string(mf.key), mf.render(scenario.machine));
    } else if (f.key == "model") {
      for (const auto& mf : model_fields())
        entries.emplace_back("model." + std::string(mf.key), mf.render(scenario.model));
    } else {
      entries.emplace_back(std::string(f.key), f.render(draft));
    }
  }
  // An empty rendering is an absent optional group (a dense model has no `moe`).
  std::erase_if(entries, [](const auto& entry) { return entry.second.empty(); });
  return emit_nested(entries);
}

std::string render_schema() {
  std::vector<std::array<std::string, 4>> rows;
  rows.push_back({"key", "type", "default", "description"});
  for (const auto& f : scenario_fields()) {
    rows.push_back(
        {std::string(f.key), std::string(f.type), std::string(f.default_text), std::string(f.help)});
    if (f.key == "machine") add_rows(rows, std::span(machine_fields()), "machine.");
    if (f.key == "model") add_rows(rows, std::span(model_fields()), "model.");
  }
  std::array<std::size_t, 3> width{};
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    out += fmt::format("{:<{}}  {:<{}}  {:<{}}  {}\n", r[0], width[0], r[1], width[1], r[2], width[2], r[3]);
  }
  return out;
}

} // namespace odyssey
