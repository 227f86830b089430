// Profile import: raw benchmark results (kernels/, format odyssey-raw/1) to a measured
// calibration profile, tables measured by others (calibration/published/) to a published one, and
// the shapes a scenario needs measured. The command line for both
// (`odyssey calibrate import`, `odyssey calibrate shapes`) is tools/calibrate_cli.*. Throws
// InputError for bad input.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "calibration/profile.hpp"
#include "calibration/published.hpp"
#include "models/workload.hpp"

namespace odyssey {

/// The raw format the importer reads (written by kernels/bench_common.cpp).
inline constexpr const char* RAW_FORMAT = "odyssey-raw/1";

/// The formats of published tables `odyssey calibrate import --published FORMAT=FILE` reads.
enum class PublishedFormat {
  XLA_MATMUL, ///< OpenXLA's GEMM throughput text-proto (calibration/published/xla-matmul-*.textproto)
  /// OpenXLA's NCCL collective throughput over groups of one server (xla-collective-*.textproto)
  XLA_COLLECTIVE,
  FLASH_ATTENTION, ///< FlashAttention throughput CSV (calibration/published/flash-attention.csv)
  LAYER_TIMES,     ///< measured per-layer times CSV (calibration/published/*-layer-times.csv)
  /// Another GPU's published profile whose kernel.time_scale came from measured layer times: its
  /// factor carried to this GPU as an ASSUMPTION, for a GPU without layer times of its own.
  ASSUMED_TIME_SCALE
};

/// One published table to import.
struct PublishedTable {
  PublishedFormat format = PublishedFormat::XLA_MATMUL;
  std::string path;
};

/// Parses `FORMAT=FILE` (`xla-matmul=...`, `xla-collective=...`, `flash-attention=...`, `layer-times=...`,
/// `assumed-time-scale=PROFILE`); InputError otherwise.
PublishedTable parse_published_table(const std::string& spec);

/// One layer of a layer-time row as the model prices it (time_scale 1): the kernels' time and the
/// rest of the pass (collectives the kernels do not hide), forward and backward.
struct LayerPrice {
  Seconds forward_compute;
  Seconds forward_other;
  Seconds backward_compute;
  Seconds backward_other;
};

/// Prices the layer a layer-time row measured, with `profile`, through the run path (the row's
/// scenario, workload and the planner's screen); supplied by the command line, which loads
/// scenarios. InputError for a row it cannot set up.
using LayerPricer = std::function<LayerPrice(const LayerTimeRow& row, const Profile& profile)>;

struct ImportOptions {
  std::vector<std::string> raw_files;    ///< measured import (kind: measured)
  std::vector<PublishedTable> published; ///< published import (kind: published); not with raw_files
  std::string out;                       ///< profile path to write
  std::string gpu;          ///< GPU type; "" = from the raw files' GPU name (published: the base's)
  std::string base;         ///< datasheet profile for peaks and unmeasured values; "" = the GPU's own
  std::string profiles_dir; ///< where to look for the datasheet profile
  std::string machine_gpu;  ///< when set (from --scenario), the GPU the profile must describe
  std::string machine_name;
  LayerPricer price_layer; ///< needed by layer-times tables
};

/// What an import measured and kept, for the summary it prints.
struct ImportSummary {
  std::string gpu;
  std::string base;
  std::vector<std::string> measured; ///< "gemm_points: 120 shapes (bf16 60, fp8 60)", ...
  std::vector<std::string> kept;     ///< tables taken from the base profile
  std::vector<std::string> skipped;  ///< results not used, with why
};

/// Reads the raw files, derives the measured values, writes the profile (kind: measured) and
/// loads it back to check it. The profile text names every raw file's provenance. With
/// `options.published` instead, does what import_published does.
ImportSummary import_profile(const ImportOptions& options);

/// Reads published tables, keeps the rows measured on the profile's GPU, turns rates into
/// fractions of the base profile's peaks, writes a `kind: published` profile (the base's other
/// values, every table with its source under `tables`) and loads it back to check it.
ImportSummary import_published(const ImportOptions& options);

/// The GPU type Odyssey's presets use for a CUDA device name ("NVIDIA H100 80GB HBM3" ->
/// "H100-SXM5-80GB"), or "" when the name is not one it knows.
std::string gpu_type_of_device(const std::string& device_name);

/// The key OpenXLA's performance tables file a GPU type's measurements under ("H100-SXM5-80GB" ->
/// "sm_90"), or "" when no key names that GPU alone (H200 shares sm_90 with the H100 the table
/// was measured on, but not its memory).
std::string xla_arch_of_gpu_type(const std::string& gpu);

/// One line per distinct GEMM and attention shape the workload runs (kernels/shapes.hpp format),
/// so the benchmarks measure exactly what a scenario prices.
std::string scenario_shapes(const Workload& workload);

} // namespace odyssey
