// Raw benchmark results to a measured profile (`odyssey calibrate import`), and the shapes a
// scenario needs (`odyssey calibrate shapes`). Raw files are JSON, read with the strict YAML
// reader (JSON is YAML) so that every problem names its file, line and column.
#include "calibration/import.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "calibration/profile.hpp"
#include "calibration/published.hpp"
#include "models/input/diagnostics.hpp"
#include "models/input/files.hpp"
#include "models/input/yaml_reader.hpp"
#include "models/wording.hpp"

namespace odyssey {

namespace {

namespace fs = std::filesystem;

enum class Benchmark { GEMM, ATTENTION, MEMORY, NCCL };

/// One raw file, checked: its benchmark, provenance and results.
struct RawFile {
  std::string path;
  Benchmark benchmark = Benchmark::GEMM;
  std::string tool;
  std::string gpu_name;
  std::optional<YamlValue> gpu_node; ///< provenance.gpu.name (optional only because YamlValue has no default)
  long sms = 0;
  double memory_bytes = 0;
  long sm_clock_mhz = 0;
  long memory_clock_mhz = 0;
  std::string driver;
  std::string cuda;
  std::vector<std::pair<std::string, std::string>> libraries;
  std::string host_hash;
  std::string date; ///< YYYY-MM-DD
  std::string commit;
  std::string notes;
  std::vector<YamlValue> results; ///< status "ok" only
  int not_ok = 0;                 ///< results the benchmark could not measure (unsupported, out of memory)
};

RawFile load_raw(const std::string& path) {
  const YamlValue root = load_yaml_file(path);
  root.require_map();
  // The version first, so that a newer file fails on its version rather than on a renamed key.
  const YamlValue format = root.require("format");
  if (format.as_string() != RAW_FORMAT)
    format.fail("unsupported raw format '" + format.as_string() + "' (expected " + RAW_FORMAT + ")");
  root.check_keys({"format", "benchmark", "provenance", "policy", "results"});

  // Never assign one YamlValue to another: yaml-cpp's Node assignment rewrites the node it refers to.
  RawFile raw{.path = path};
  raw.benchmark = root.require("benchmark")
                      .as_enum<Benchmark>({{"gemm", Benchmark::GEMM},
                                           {"attention", Benchmark::ATTENTION},
                                           {"memory", Benchmark::MEMORY},
                                           {"nccl", Benchmark::NCCL}});

  const YamlValue prov = root.require("provenance");
  prov.require_map();
  prov.check_keys(
      {"tool", "gpu", "driver", "cuda_runtime", "libraries", "host_hash", "date", "commit", "notes"});
  raw.tool = prov.require("tool").as_string();
  const YamlValue gpu = prov.require("gpu");
  gpu.require_map();
  gpu.check_keys({"name", "compute_capability", "sms", "memory_bytes", "l2_bytes", "sm_clock_mhz",
                  "memory_clock_mhz", "memory_bus_bits"});
  raw.gpu_node.emplace(gpu.require("name"));
  raw.gpu_name = raw.gpu_node->as_string();
  raw.sms = gpu.require("sms").as_positive_count();
  raw.memory_bytes = gpu.require("memory_bytes").as_number();
  raw.sm_clock_mhz = gpu.require("sm_clock_mhz").as_count();
  raw.memory_clock_mhz = gpu.require("memory_clock_mhz").as_count();
  raw.driver = prov.require("driver").as_string();
  raw.cuda = prov.require("cuda_runtime").as_string();
  const YamlValue libs = prov.require("libraries");
  libs.require_map();
  for (const auto& [name, version] : libs.entries()) raw.libraries.emplace_back(name, version.as_string());
  raw.host_hash = prov.require("host_hash").as_string();
  const YamlValue date = prov.require("date");
  raw.date = date.as_string().substr(0, 10);
  const bool iso = raw.date.size() == 10 && raw.date[4] == '-' && raw.date[7] == '-' &&
                   std::all_of(raw.date.begin(), raw.date.end(),
                               [](char c) { return c == '-' || (c >= '0' && c <= '9'); });
  if (!iso) date.fail("expected an ISO date (YYYY-MM-DD...), got '" + date.as_string() + "'");
  raw.commit = prov.require("commit").as_string();
  raw.notes = prov.require("notes").as_string();

  const YamlValue results = root.require("results");
  if (!results.is_sequence()) results.fail("expected a list of results");
  for (const YamlValue& r : results.items()) {
    r.require_map();
    const std::string status = r.require("status").as_string();
    if (status == "ok") {
      const YamlValue time = r.require("time");
      time.require_map();
      time.check_keys({"median_s", "min_s", "max_s", "p10_s", "p90_s", "spread", "samples",
                       "launches_per_sample", "stable"});
      const YamlValue median = time.require("median_s");
      if (!(median.as_number() > 0))
        median.fail("must be a positive time in seconds, got " + median.as_string());
      raw.results.push_back(r);
    } else if (status == "unsupported" || status == "out_of_memory") {
      ++raw.not_ok;
    } else {
      r.require("status").fail("unknown status '" + status + "' (expected ok, unsupported or out_of_memory)");
    }
  }
  return raw;
}

double median_time(const YamlValue& result) {
  return result.require("time").require("median_s").as_number();
}

/// How others name a GPU type the machine presets use.
struct GpuNames {
  std::string device; ///< CUDA device name, as cudaGetDeviceProperties reports it
  std::string type;   ///< Odyssey's GPU type
  std::string xla;    ///< OpenXLA's performance-table key; "" where the key is not this GPU's alone
};

const std::vector<GpuNames>& gpu_names() {
  static const std::vector<GpuNames> names = {
      {.device = "Tesla V100-SXM2-32GB", .type = "V100-SXM2-32GB", .xla = "sm_70"},
      {.device = "NVIDIA A100-SXM4-80GB", .type = "A100-SXM4-80GB", .xla = "sm_80"},
      {.device = "NVIDIA H100 80GB HBM3", .type = "H100-SXM5-80GB", .xla = "sm_90"},
      // sm_90 too, but OpenXLA's sm_90 table was measured on an H100, with less and slower memory.
      {.device = "NVIDIA H200", .type = "H200-SXM-141GB", .xla = ""},
  };
  return names;
}

/// The newest datasheet profile for `gpu` in `dir` (the base of a measured profile).
std::string find_datasheet(const std::string& dir, const std::string& gpu) {
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".yaml") files.push_back(it->path().string());
  std::sort(files.begin(), files.end());
  std::string best;
  std::string best_date;
  for (const std::string& f : files) {
    const Profile p = load_profile(f);
    if (p.gpu == gpu && p.provenance.kind == ProfileKind::DATASHEET &&
        (best.empty() || p.provenance.date > best_date)) {
      best = f;
      best_date = p.provenance.date;
    }
  }
  return best;
}

/// The profile an import takes peaks and everything it does not derive from: --base, else the
/// GPU's newest datasheet profile.
Profile load_base(const ImportOptions& o, const std::string& gpu) {
  const std::string base_path = o.base.empty() ? find_datasheet(o.profiles_dir, gpu) : o.base;
  if (base_path.empty())
    throw InputError({.file = o.profiles_dir}, "",
                     fmt::format("no datasheet profile for GPU '{}' to take peaks and unmeasured values from "
                                 "(give one with --base PROFILE)",
                                 gpu));
  Profile base = load_profile(base_path);
  if (base.gpu != gpu)
    throw InputError(base.gpu_where, "gpu",
                     fmt::format("base profile describes GPU '{}', not {}", base.gpu, gpu));
  return base;
}

std::string yaml_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

std::string num(double v) {
  return fmt::format("{:.6g}", v);
}
std::string flop_rate(FlopsPerSecond r) {
  return yaml_quote(num(r.value() / 1e12) + " TFLOP/s");
}
std::string byte_rate(BytesPerSecond r) {
  return yaml_quote(num(r.value() / 1e9) + " GB/s");
}
std::string micro(Seconds s) {
  return yaml_quote(num(s.value() * 1e6) + " us");
}
std::string latencies(const ProtocolLatency& l) {
  return fmt::format("{{LL: {}, LL128: {}, Simple: {}}}", micro(l.ll), micro(l.ll128), micro(l.simple));
}

const char* dtype_key(Precision p) {
  return to_string(p);
}

std::optional<Precision> precision_of(const std::string& dtype) {
  if (dtype == "fp32") return Precision::FP32;
  if (dtype == "fp16") return Precision::FP16;
  if (dtype == "bf16") return Precision::BF16;
  if (dtype == "fp8") return Precision::FP8;
  return std::nullopt; // tf32: Odyssey prices fp32 training at the fp32 peak, so tf32 has no op to price
}

/// The profile as the YAML load_profile reads, every value from `p`; `header` (comment lines)
/// goes first. Both imports write through here, so a profile field is written in one place.
std::string profile_yaml(const Profile& p, const std::string& header) {
  std::string y = header;
  y += fmt::format("format: {}\ngpu: {}\nkind: {}\n", PROFILE_FORMAT, p.gpu, to_string(p.provenance.kind));
  y += fmt::format("provenance:\n  source: {}\n  date: \"{}\"\n  notes: {}\n",
                   yaml_quote(p.provenance.source), p.provenance.date, yaml_quote(p.provenance.notes));
  y += "peak:\n";
  for (const auto& [d, rate] : p.peak) y += fmt::format("  {}: {}\n", dtype_key(d), flop_rate(rate));
  if (p.tf32_peak.value() > 0) y += fmt::format("  tf32: {}\n", flop_rate(p.tf32_peak));
  y += fmt::format("gemm:\n  sms: {}\n  tile: {{m: {}, n: {}}}\n", p.sms, p.gemm_tile_m, p.gemm_tile_n);
  if (!p.gemm_tiles.empty()) {
    y += "  tiles:";
    for (size_t i = 0; i < p.gemm_tiles.size(); ++i)
      y += fmt::format("{}{{m: {}, n: {}}}", i ? ", " : " [", p.gemm_tiles[i].m, p.gemm_tiles[i].n);
    y += "]\n";
  }
  y += fmt::format("  k_block: {}\n  fill: {}\n  max_split_k: {}\n  max_efficiency:\n", p.gemm_k_block,
                   num(p.gemm_fill), p.gemm_max_split_k);
  for (const auto& [d, e] : p.gemm_max_efficiency_by_dtype)
    y += fmt::format("    {}: {}\n", dtype_key(d), num(e));
  if (!p.gemm_best_shape.empty()) {
    y += "  best_shape:\n";
    for (const auto& [d, s] : p.gemm_best_shape)
      y += fmt::format("    {}: {{m: {}, n: {}, k: {}}}\n", dtype_key(d), s[0], s[1], s[2]);
  }
  if (!p.gemm_sustained.empty()) {
    y += "  sustained:\n";
    for (const auto& [d, f] : p.gemm_sustained) y += fmt::format("    {}: {}\n", dtype_key(d), num(f));
  }
  if (!p.tables.empty()) {
    y += "tables:\n";
    for (const TableSource& t : p.tables)
      y += fmt::format("  - {{table: {}, source: {}}}\n", yaml_quote(t.table), yaml_quote(t.source));
  }
  if (!p.gemm_points.empty()) {
    y += "gemm_points:\n";
    for (const GemmPoint& g : p.gemm_points)
      y += fmt::format("  - {{m: {}, n: {}, k: {}, {}dtype: {}, efficiency: {}}}\n", g.m, g.n, g.k,
                       g.batch == 1 ? "" : fmt::format("batch: {}, ", g.batch), dtype_key(g.dtype),
                       num(g.efficiency));
  }
  y += fmt::format("attention:\n  efficiency: {}\n", num(p.attention_efficiency));
  if (p.attention_backward_efficiency > 0)
    y += fmt::format("  backward_efficiency: {}\n", num(p.attention_backward_efficiency));
  if (p.attention_fa2_efficiency > 0)
    y += fmt::format("  flash_attention_2: {{efficiency: {}, backward_efficiency: {}}}\n",
                     num(p.attention_fa2_efficiency), num(p.attention_fa2_backward_efficiency));
  if (!p.attention_points.empty()) {
    y += "attention_points:\n";
    for (const AttentionPoint& a : p.attention_points)
      y += fmt::format("  - {{pass: {}, head_dim: {}, seq: {}, causal: {}, dtype: {}, efficiency: {}}}\n",
                       a.pass == AttentionPass::FORWARD ? "forward" : "backward", a.head_dim, a.seq, a.causal,
                       dtype_key(a.dtype), num(a.efficiency));
  }
  y += fmt::format("memory:\n  bandwidth: {}\n  efficiency: {}\n", byte_rate(p.memory_bandwidth),
                   num(p.memory_efficiency));
  y += fmt::format("kernel:\n  launch_overhead: {}\n", micro(p.launch_overhead));
  if (p.kernel_time_scale != 1.0) y += fmt::format("  time_scale: {}\n", num(p.kernel_time_scale));
  y += fmt::format("collective:\n  base_latency: {}\n", latencies(p.collective_base_latency_by_protocol));
  if (const TreeChannelCap& cap = p.tree_channel_bandwidth; cap.one_server.value() > 0)
    y += fmt::format("  tree_channel_bandwidth: {{one_server: {}, two_servers: {}, more_servers: {}}}\n",
                     byte_rate(cap.one_server), byte_rate(cap.two_servers), byte_rate(cap.more_servers));
  y += "links:\n";
  for (const auto& [name, link] :
       {std::pair{"nvlink", &p.nvlink}, std::pair{"pcie", &p.pcie}, std::pair{"net", &p.net}}) {
    y += fmt::format("  {}:\n    bandwidth: {}\n    bus_efficiency: {}\n    step_latency: {}\n", name,
                     byte_rate(link->bandwidth), num(link->bus_efficiency),
                     latencies(link->step_latency_by_protocol));
    if (link->nvls_efficiency > 0) y += fmt::format("    nvls_efficiency: {}\n", num(link->nvls_efficiency));
    if (link->ring_channels > 0) y += fmt::format("    ring_channels: {}\n", link->ring_channels);
    if (!link->group_efficiency.empty()) {
      y += "    group_efficiency:\n";
      for (const GroupEfficiency& g : link->group_efficiency)
        y += fmt::format("      - {{op: {}, ranks: {}, bus_efficiency: {}}}\n", collective_name(g.kind),
                         g.ranks, num(g.bus_efficiency));
    }
  }
  return y;
}

/// A fraction of peak from a measurement; above 1 (boost clocks over the datasheet's) is capped,
/// and counted, because the profile format holds fractions of the datasheet peak.
double capped_fraction(double x, int& capped) {
  if (x > 1.0) {
    ++capped;
    return 1.0;
  }
  return x;
}

struct GemmKey {
  long m, n, k;
  Precision dtype;
  auto operator<=>(const GemmKey&) const = default;
};

} // namespace

std::string gpu_type_of_device(const std::string& device_name) {
  for (const GpuNames& g : gpu_names())
    if (g.device == device_name) return g.type;
  return "";
}

std::string xla_arch_of_gpu_type(const std::string& gpu) {
  for (const GpuNames& g : gpu_names())
    if (g.type == gpu) return g.xla;
  return "";
}

ImportSummary import_profile(const ImportOptions& o) {
  if (!o.published.empty()) {
    if (!o.raw_files.empty())
      throw InputError(
          {.file = o.raw_files.front()}, "",
          "raw files (a measured profile) and published tables (a published profile) make different "
          "profiles: import them separately");
    return import_published(o);
  }
  if (o.raw_files.empty()) throw InputError({.file = "calibrate import"}, "", "no raw files given");
  std::vector<RawFile> raws;
  for (const std::string& f : o.raw_files) raws.push_back(load_raw(f));

  // One GPU: every file must come from the same device model.
  for (const RawFile& r : raws) {
    if (r.gpu_name != raws.front().gpu_name || r.sms != raws.front().sms)
      r.gpu_node->fail(
          fmt::format("raw files come from different GPUs: '{}' ({} SMs) here, '{}' ({} SMs) in {}",
                      r.gpu_name, r.sms, raws.front().gpu_name, raws.front().sms, raws.front().path));
  }
  const RawFile& first = raws.front();
  const std::string detected = gpu_type_of_device(first.gpu_name);
  std::string gpu = o.gpu.empty() ? detected : o.gpu;
  if (gpu.empty()) {
    std::string known;
    for (const GpuNames& g : gpu_names()) known += (known.empty() ? "" : ", ") + g.type;
    first.gpu_node->fail(fmt::format(
        "GPU '{}' is not one Odyssey knows; name its type with --gpu TYPE (e.g. {})", first.gpu_name, known));
  }
  if (!detected.empty() && detected != gpu)
    first.gpu_node->fail(
        fmt::format("the raw files were measured on '{}' ({}), not on {}", first.gpu_name, detected, gpu));
  if (!o.machine_gpu.empty() && o.machine_gpu != gpu)
    first.gpu_node->fail(fmt::format("the raw files were measured on {} but machine '{}' has {}", gpu,
                                     o.machine_name, o.machine_gpu));

  const Profile base = load_base(o, gpu);

  ImportSummary summary{.gpu = gpu, .base = base.name};
  int capped = 0;

  // GEMMs: one point per (m x batch, n, k, dtype); the layouts of one shape are averaged because
  // the cost model prices a shape, not a layout.
  std::map<GemmKey, std::pair<double, int>> gemm_time; // summed time, count
  std::map<GemmKey, double> gemm_flops;
  std::map<std::string, int> gemm_unpriced;
  // Attention: the FLOPs the cost model charges (causal fused kernels: half) over time.
  double attn_work = 0, attn_time = 0;
  int attn_cases = 0;
  std::optional<Precision> attn_dtype;
  // Memory-bound kernels: the largest case of each.
  std::map<std::string, std::pair<double, double>> memory_largest; // kernel -> (bytes, bytes/s)
  std::optional<double> launch;
  std::optional<double> copy_rate;
  std::optional<double> nvlink_busbw, net_busbw;
  int nvlink_ranks = 0, net_nodes = 0;

  for (const RawFile& raw : raws) {
    if (raw.not_ok > 0)
      summary.skipped.push_back(
          fmt::format("{}: {} the benchmark could not run", raw.path, counted(raw.not_ok, "case")));
    for (const YamlValue& r : raw.results) {
      switch (raw.benchmark) {
      case Benchmark::GEMM: {
        r.check_keys({"name", "role", "layout", "dtype", "m", "n", "k", "batch", "hidden", "tp", "tokens",
                      "flops", "status", "time", "tflops"});
        const std::string dtype = r.require("dtype").as_string();
        const auto p = precision_of(dtype);
        if (!p || !base.peak.contains(*p)) {
          ++gemm_unpriced[dtype];
          continue;
        }
        const long m = r.require("m").as_positive_count(), n = r.require("n").as_positive_count(),
                   k = r.require("k").as_positive_count(), batch = r.require("batch").as_positive_count();
        const GemmKey key{m * batch, n, k, *p};
        gemm_time[key].first += median_time(r);
        gemm_time[key].second += 1;
        gemm_flops[key] = 2.0 * double(m) * double(n) * double(k) * double(batch);
        break;
      }
      case Benchmark::ATTENTION: {
        r.check_keys({"name", "pass", "batch", "heads", "kv_heads", "seq_q", "seq_kv", "head_dim", "causal",
                      "dtype", "flops", "status", "time", "tflops"});
        const auto p = precision_of(r.require("dtype").as_string());
        if (!p || !base.peak.contains(*p)) continue;
        attn_dtype = *p;
        const bool causal = r.require("causal").as_bool();
        const double flops = r.require("flops").as_number();
        attn_work += (causal ? 0.5 : 1.0) * flops / base.peak.at(*p).value();
        attn_time += median_time(r);
        ++attn_cases;
        break;
      }
      case Benchmark::MEMORY: {
        r.check_keys({"kernel", "shape", "bytes", "status", "time", "gb_per_s"});
        const std::string kernel = r.require("kernel").as_string();
        const double t = median_time(r);
        if (kernel == "empty_kernel") {
          launch = t;
          continue;
        }
        const double bytes = r.require("bytes").as_number();
        if (kernel == "d2d_copy") {
          copy_rate = std::max(copy_rate.value_or(0.0), bytes / t);
          continue;
        }
        auto& [largest, rate] = memory_largest[kernel];
        if (bytes > largest) largest = bytes, rate = bytes / t;
        break;
      }
      case Benchmark::NCCL: {
        r.check_keys(
            {"op", "bytes", "count", "type", "ranks", "nodes", "status", "time", "algbw_gbps", "busbw_gbps"});
        if (r.require("op").as_string() != "all-reduce") continue;
        const double busbw = r.require("busbw_gbps").as_number() * 1e9;
        const long nodes = r.require("nodes").as_positive_count();
        if (nodes == 1) {
          nvlink_busbw = std::max(nvlink_busbw.value_or(0.0), busbw);
          nvlink_ranks = static_cast<int>(r.require("ranks").as_positive_count());
        } else {
          net_busbw = std::max(net_busbw.value_or(0.0), busbw);
          net_nodes = static_cast<int>(nodes);
        }
        break;
      }
      }
    }
  }
  for (const auto& [dtype, count] : gemm_unpriced)
    summary.skipped.push_back(fmt::format("{} {} {}: {}", count, dtype, noun_for(double(count), "GEMM"),
                                          dtype == "tf32" ? "Odyssey prices fp32 training at the fp32 peak"
                                                          : "no " + dtype + " peak in " + base.name));

  // ---- the measured values ----
  std::vector<GemmPoint> points;
  std::map<Precision, double> best = base.gemm_max_efficiency_by_dtype;
  std::map<Precision, int> per_dtype;
  std::set<Precision> measured_dtypes;
  for (const auto& [key, sum] : gemm_time) {
    const double t = sum.first / sum.second;
    const double e = capped_fraction(gemm_flops[key] / t / base.peak.at(key.dtype).value(), capped);
    points.push_back({.m = key.m, .n = key.n, .k = key.k, .dtype = key.dtype, .efficiency = e});
    if (!measured_dtypes.contains(key.dtype)) best[key.dtype] = 0.0;
    measured_dtypes.insert(key.dtype);
    best[key.dtype] = std::max(best[key.dtype], e);
    ++per_dtype[key.dtype];
  }
  if (!points.empty()) {
    std::string by;
    for (const auto& [d, c] : per_dtype)
      by += fmt::format("{}{} {}", by.empty() ? "" : ", ", dtype_key(d), c);
    summary.measured.push_back(fmt::format("gemm_points: {} ({}); gemm.max_efficiency of those dtypes",
                                           counted(long(points.size()), "shape"), by));
  } else {
    summary.kept.push_back("gemm.max_efficiency (no GEMM measured)");
  }
  double attention = base.attention_efficiency;
  if (attn_cases > 0) {
    attention = capped_fraction(attn_work / attn_time, capped);
    summary.measured.push_back(
        fmt::format("attention.efficiency {:.3f} ({} {} cases, causal work halved as the cost model does)",
                    attention, attn_cases, dtype_key(*attn_dtype)));
  } else {
    summary.kept.push_back("attention.efficiency");
  }
  double memory = base.memory_efficiency;
  if (!memory_largest.empty()) {
    std::vector<double> fractions;
    std::string kernels;
    for (const auto& [kernel, v] : memory_largest) {
      fractions.push_back(v.second / base.memory_bandwidth.value());
      kernels += (kernels.empty() ? "" : ", ") + kernel;
    }
    std::sort(fractions.begin(), fractions.end());
    const std::size_t n = fractions.size();
    memory =
        capped_fraction(n % 2 ? fractions[n / 2] : 0.5 * (fractions[n / 2 - 1] + fractions[n / 2]), capped);
    summary.measured.push_back(
        fmt::format("memory.efficiency {:.3f} (median over {} at their largest size)", memory, kernels));
  } else {
    summary.kept.push_back("memory.efficiency");
  }
  if (copy_rate)
    summary.measured.push_back(
        fmt::format("device-to-device copy {:.0f} GB/s (reads + writes; informational)", *copy_rate / 1e9));
  Seconds launch_overhead = base.launch_overhead;
  if (launch) {
    launch_overhead = Seconds(*launch);
    summary.measured.push_back(
        fmt::format("kernel.launch_overhead {:.2f} us (empty kernel, back to back; no framework dispatch)",
                    *launch * 1e6));
  } else {
    summary.kept.push_back("kernel.launch_overhead");
  }
  // Link classes: the best all-reduce bus bandwidth over the datasheet's nominal link bandwidth.
  auto link_from = [&](const LinkClassProfile& link, std::optional<double> busbw, const char* key,
                       const std::string& over) {
    LinkClassProfile out = link;
    if (!busbw) {
      summary.kept.push_back(std::string("links.") + key);
      return out;
    }
    out.bus_efficiency = capped_fraction(*busbw / link.bandwidth.value(), capped);
    summary.measured.push_back(
        fmt::format("links.{}.bus_efficiency {:.3f} (all-reduce busbw {:.1f} GB/s over {})", key,
                    out.bus_efficiency, *busbw / 1e9, over));
    return out;
  };
  const LinkClassProfile nvlink =
      link_from(base.nvlink, nvlink_busbw, "nvlink", counted(nvlink_ranks, "GPU"));
  const LinkClassProfile net = link_from(base.net, net_busbw, "net", counted(net_nodes, "node"));
  summary.kept.insert(summary.kept.end(), {"peak", "gemm.tile", "memory.bandwidth", "links.pcie",
                                           "latencies (NCCL's tuning constants)"});
  if (capped > 0)
    summary.skipped.push_back(fmt::format(
        "{} measured fractions above the datasheet peak capped at 1 (clocks above the datasheet's?)",
        capped));

  // ---- provenance ----
  std::set<std::string> tools, commits, hosts, dates, notes;
  std::map<std::string, std::string> libs;
  for (const RawFile& r : raws) {
    tools.insert(r.tool);
    commits.insert(r.commit);
    hosts.insert(r.host_hash);
    dates.insert(r.date);
    if (!r.notes.empty()) notes.insert(r.notes);
    for (const auto& [name, version] : r.libraries) libs[name] = version;
  }
  auto join = [](const auto& items, const char* sep) {
    std::string out;
    for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
    return out;
  };
  std::string lib_text;
  for (const auto& [name, version] : libs) lib_text += fmt::format(", {} {}", name, version);
  const std::string source = fmt::format(
      "odyssey calibrate import of {} (commit {}): GPU '{}' ({} SMs, {:.1f} GiB, SM clock {} MHz, memory "
      "clock {} MHz), "
      "driver {}, CUDA {}{}, host {}",
      join(tools, ", "), join(commits, ", "), first.gpu_name, first.sms, first.memory_bytes / 1073741824.0,
      first.sm_clock_mhz, first.memory_clock_mhz, first.driver, first.cuda, lib_text, join(hosts, ", "));
  const std::string note_text =
      fmt::format("measured: {}; from {} (datasheet): {}{}", join(summary.measured, "; "), base.name,
                  join(summary.kept, ", "), notes.empty() ? "" : "; raw notes: " + join(notes, "; "));

  // ---- the profile ----
  Profile out = base;
  out.provenance = {
      .kind = ProfileKind::MEASURED, .source = source, .date = *dates.rbegin(), .notes = note_text};
  // Kernel times come from our own benchmarks now: a base's factor for others' layers does not apply.
  out.kernel_time_scale = 1.0;
  out.sms = static_cast<int>(first.sms);
  out.gemm_max_efficiency_by_dtype = best;
  out.gemm_points = points;
  out.attention_efficiency = attention;
  out.memory_efficiency = memory;
  out.launch_overhead = launch_overhead;
  out.nvlink = nvlink;
  out.net = net;
  std::string header = "# Measured profile written by `odyssey calibrate import` from:\n";
  for (const RawFile& r : raws) header += fmt::format("#   {}\n", fs::path(r.path).filename().string());
  header += fmt::format("# Values not measured come from {} (datasheet).\n", base.name);
  const std::string y = profile_yaml(out, header);

  write_file_atomically(o.out, y);
  load_profile(o.out); // what was written must read back
  return summary;
}

PublishedTable parse_published_table(const std::string& spec) {
  static const std::vector<std::pair<std::string, PublishedFormat>> formats = {
      {"xla-matmul", PublishedFormat::XLA_MATMUL},
      {"xla-collective", PublishedFormat::XLA_COLLECTIVE},
      {"flash-attention", PublishedFormat::FLASH_ATTENTION},
      {"layer-times", PublishedFormat::LAYER_TIMES},
      {"assumed-time-scale", PublishedFormat::ASSUMED_TIME_SCALE}};
  const std::size_t eq = spec.find('=');
  const std::string name = spec.substr(0, eq);
  for (const auto& [key, format] : formats)
    if (key == name && eq != std::string::npos && eq + 1 < spec.size())
      return {.format = format, .path = spec.substr(eq + 1)};
  throw InputError(
      {.file = "--published"}, "",
      fmt::format(
          "expected FORMAT=FILE with FORMAT one of xla-matmul, xla-collective, flash-attention, layer-times, "
          "assumed-time-scale, got '{}'",
          spec));
}

namespace {

constexpr const char* ONE_TIME_SCALE =
    "give one layer-times or assumed-time-scale table: each would set kernel.time_scale";

/// An assumed-time-scale table: another GPU's kernel.time_scale, fitted to layer times measured on
/// that GPU, carried to this one for want of its own layer times. The profile's `tables` says it
/// is assumed and where the factor was measured; reports repeat it.
void assume_time_scale(const std::string& path, Profile& out, ImportSummary& summary,
                       std::vector<std::string>& sources) {
  if (out.kernel_time_scale != 1.0) throw InputError({.file = path}, "", ONE_TIME_SCALE);
  const Profile other = load_profile(path);
  const auto measured = std::find_if(other.tables.begin(), other.tables.end(),
                                     [](const TableSource& t) { return t.table == LAYER_TIMES_TABLE; });
  if (measured == other.tables.end())
    throw InputError(
        {.file = path}, "kernel.time_scale",
        fmt::format("{} has no kernel.time_scale fitted to measured layer times to carry over", other.name));
  if (other.gpu == out.gpu)
    throw InputError(
        {.file = path}, "gpu",
        fmt::format("{} describes {} itself: import its layer-times table instead", other.name, out.gpu));
  out.kernel_time_scale = other.kernel_time_scale;
  const std::string source =
      fmt::format("{} on {} ({}, kernel.time_scale {}), ASSUMED for {} for want of its "
                  "own layer times",
                  measured->source, other.gpu, other.name, num(other.kernel_time_scale), out.gpu);
  out.tables.push_back({.table = ASSUMED_TIME_SCALE_TABLE, .source = source});
  sources.push_back(source);
  summary.measured.push_back(fmt::format("kernel.time_scale {}: ASSUMED, {}'s factor from the layer times "
                                         "measured in {}",
                                         num(other.kernel_time_scale), other.gpu, measured->source));
}

/// Layer-time tables: the one kernel.time_scale that makes the model's price of the measured
/// layers add up to their measured times, forward and backward of every row together. The
/// kernels' share of a pass is scaled, the collectives are not (they are priced from their own
/// sources): scale = sum(measured - other) / sum(compute). Every row's fit is reported.
void fit_layer_times(const std::string& path, const ImportOptions& o, Profile& out, ImportSummary& summary,
                     std::vector<std::string>& sources) {
  if (!o.price_layer)
    throw InputError({.file = path}, "", "layer-times tables need the command line's layer pricing");
  if (out.kernel_time_scale != 1.0) throw InputError({.file = path}, "", ONE_TIME_SCALE);
  const std::string file = fs::path(path).filename().string();
  const std::vector<LayerTimeRow> rows = read_layer_time_table(path);
  std::vector<std::pair<const LayerTimeRow*, LayerPrice>> priced;
  std::set<std::string> row_sources;
  double measured_kernels = 0, modelled_kernels = 0;
  int other_gpu = 0;
  for (const LayerTimeRow& r : rows) {
    if (r.gpu != out.gpu) {
      ++other_gpu;
      continue;
    }
    const LayerPrice p = o.price_layer(r, out);
    priced.emplace_back(&r, p);
    measured_kernels += (r.forward - p.forward_other + r.backward - p.backward_other).value();
    modelled_kernels += (p.forward_compute + p.backward_compute).value();
    row_sources.insert(r.source);
  }
  if (other_gpu > 0)
    summary.skipped.push_back(fmt::format("{}: {} for other GPUs", file, counted(long(other_gpu), "row")));
  if (priced.empty()) return;
  if (!(modelled_kernels > 0 && measured_kernels > 0))
    throw InputError(
        {.file = path}, "",
        "the measured times are shorter than the layers' collectives alone: no kernel time to fit");
  // Rounded as the profile writes it, so that the rows below report what the profile will price.
  const double scale = std::stod(num(measured_kernels / modelled_kernels));
  if (!(scale >= KERNEL_TIME_SCALE_MIN && scale <= KERNEL_TIME_SCALE_MAX))
    throw InputError({.file = path}, "",
                     fmt::format("the layers measured {:.3g}x the model's price of their kernels; a factor "
                                 "beyond {}-{} says the model or the table is wrong, and is not applied",
                                 measured_kernels / modelled_kernels, KERNEL_TIME_SCALE_MIN,
                                 KERNEL_TIME_SCALE_MAX));
  out.kernel_time_scale = scale;
  std::string joined;
  for (const std::string& src : row_sources) joined += (joined.empty() ? "" : "; ") + src;
  out.tables.push_back({.table = LAYER_TIMES_TABLE, .source = joined + " (" + file + ")"});
  sources.push_back(joined);
  summary.measured.push_back(
      fmt::format("kernel.time_scale {}: {} rows of {} (kernel time of the layers' passes, summed: {:.2f} ms "
                  "measured, {:.2f} ms modelled)",
                  num(scale), priced.size(), file, measured_kernels * 1e3, modelled_kernels * 1e3));
  for (const auto& [r, p] : priced) {
    const Seconds f = p.forward_compute * scale + p.forward_other;
    const Seconds b = p.backward_compute * scale + p.backward_other;
    summary.measured.push_back(fmt::format(
        "layer '{}': forward {:.2f} ms measured, {:.2f} ms priced ({:+.1f}%), backward {:.2f} ms, {:.2f} ms "
        "({:+.1f}%)",
        r->experiment, r->forward.value() * 1e3, f.value() * 1e3, 100 * (f / r->forward - 1),
        r->backward.value() * 1e3, b.value() * 1e3, 100 * (b / r->backward - 1)));
  }
}

/// OpenXLA's collective table: for each collective and group size it timed (all groups inside
/// one server), the bus efficiency of its largest buffer, where launch and latency weigh least:
/// nccl-tests' busbw over the NVLink port's bandwidth, which NCCL's rings over such a group then
/// run at (LinkClassProfile::ring_efficiency). The smaller buffers are not imported: their times
/// include XLA's own launch path, which is not NCCL's latency.
void import_xla_collectives(const std::string& path, const std::string& gpu, const Profile& base,
                            Profile& out, ImportSummary& summary, std::vector<std::string>& sources,
                            int& capped) {
  const std::string file = fs::path(path).filename().string();
  const std::string arch = xla_arch_of_gpu_type(gpu);
  if (arch.empty())
    throw InputError(
        {.file = path}, "",
        fmt::format("OpenXLA's tables have no key for {} alone (see xla_arch_of_gpu_type)", gpu));
  const XlaCollectiveTable table = read_xla_collective_table(path);
  if (table.arch != arch)
    throw InputError({.file = path}, "key",
                     fmt::format("the table is for '{}', not '{}' ({})", table.arch, arch, gpu));
  if (base.nvlink.bandwidth.value() <= 0)
    throw InputError({.file = path}, "",
                     fmt::format("{} has no NVLink bandwidth to take a fraction of", base.name));
  // XLA spells its opcodes as Odyssey names its collectives; collective-permute is none of them.
  std::map<std::pair<CollectiveKind, int>, const XlaCollectiveEntry*> largest;
  std::map<std::string, int> unpriced;
  for (const XlaCollectiveEntry& e : table.entries) {
    const auto kind = collective_named(e.opcode);
    if (!kind || e.devices_per_group < 2) {
      ++unpriced[e.opcode];
      continue;
    }
    const XlaCollectiveEntry*& best = largest[{*kind, e.devices_per_group}];
    if (best == nullptr || e.counted_bytes() > best->counted_bytes()) best = &e;
  }
  for (const auto& [opcode, count] : unpriced)
    summary.skipped.push_back(fmt::format("{}: {} '{}' entries: not a collective Odyssey prices over a group",
                                          file, count, opcode));
  if (largest.empty())
    throw InputError({.file = path}, "entry",
                     "no all-reduce, all-gather, reduce-scatter or all-to-all entries");
  out.nvlink.group_efficiency.clear();
  std::string what;
  for (const auto& [key, e] : largest) {
    const auto [kind, ranks] = key;
    const double busbw = e->throughput * bus_factor(kind, ranks);
    const double efficiency = capped_fraction(busbw / base.nvlink.bandwidth.value(), capped);
    out.nvlink.group_efficiency.push_back({.kind = kind, .ranks = ranks, .bus_efficiency = efficiency});
    what += fmt::format("{}{} over {}: {} ({:.0f} GB/s busbw at {:.0f} MiB)", what.empty() ? "" : ", ",
                        collective_name(kind), ranks, num(efficiency), busbw / 1e9,
                        e->counted_bytes().value() / (1 << 20));
  }
  out.tables.push_back({.table = "collectives in one server",
                        .source = fmt::format("{} (under {}; {})", table.source, arch, file)});
  summary.measured.push_back(fmt::format(
      "links.nvlink.group_efficiency from {} ({}, largest buffer of each): {}", file, arch, what));
  sources.push_back(table.source);
}

} // namespace

ImportSummary import_published(const ImportOptions& o) {
  if (o.published.empty()) throw InputError({.file = "calibrate import"}, "", "no published tables given");
  std::string gpu = o.gpu;
  if (gpu.empty()) {
    if (o.base.empty())
      throw InputError({.file = "calibrate import"}, "",
                       "name the GPU the tables are for with --gpu TYPE or --base PROFILE");
    gpu = load_profile(o.base).gpu;
  }
  if (!o.machine_gpu.empty() && o.machine_gpu != gpu)
    throw InputError({.file = o.published.front().path}, "",
                     fmt::format("the profile would describe {} but machine '{}' has {}", gpu, o.machine_name,
                                 o.machine_gpu));
  const Profile base = load_base(o, gpu);
  ImportSummary summary{.gpu = gpu, .base = base.name};
  Profile out = base;
  out.gemm_points.clear();
  out.attention_points.clear();
  out.tables.clear();
  std::vector<std::string> sources;
  int capped = 0;

  out.kernel_time_scale = 1.0;
  for (const PublishedTable& t : o.published) {
    const std::string file = fs::path(t.path).filename().string();
    if (t.format == PublishedFormat::LAYER_TIMES || t.format == PublishedFormat::ASSUMED_TIME_SCALE) {
      continue; // after the per-kernel tables, which the layers' price rests on
    } else if (t.format == PublishedFormat::XLA_COLLECTIVE) {
      import_xla_collectives(t.path, gpu, base, out, summary, sources, capped);
    } else if (t.format == PublishedFormat::XLA_MATMUL) {
      const std::string arch = xla_arch_of_gpu_type(gpu);
      if (arch.empty())
        throw InputError(
            {.file = t.path}, "",
            fmt::format("OpenXLA's tables have no key for {} alone (see xla_arch_of_gpu_type)", gpu));
      const XlaMatmulTable table = read_xla_matmul_table(t.path);
      // OpenXLA's dtype combinations Odyssey prices: both inputs and the output in one precision
      // (fp8 inputs accumulate to bf16).
      static const std::map<std::string, Precision> priced = {{"bf16xbf16->bf16", Precision::BF16},
                                                              {"f16xf16->f16", Precision::FP16},
                                                              {"f32xf32->f32", Precision::FP32},
                                                              {"f8e4m3fnxf8e4m3fn->bf16", Precision::FP8}};
      std::map<std::string, std::vector<GemmPoint>> by_dtypes;
      std::set<std::string> other_archs;
      for (const XlaMatmulEntry& e : table.entries) {
        if (e.arch != arch) {
          other_archs.insert(e.arch);
          continue;
        }
        for (const XlaMatmulRate& r : e.rates) {
          const auto p = priced.find(r.dtypes);
          GemmPoint g{.m = e.m, .n = e.n, .k = e.k, .batch = e.b};
          if (p != priced.end()) {
            g.dtype = p->second;
            if (base.peak.contains(g.dtype))
              g.efficiency = r.flops_per_second / base.peak.at(g.dtype).value();
          }
          by_dtypes[r.dtypes].push_back(g);
        }
      }
      if (by_dtypes.empty())
        throw InputError({.file = t.path}, "",
                         fmt::format("no entries under '{}' ({}); the table has {}", arch, gpu,
                                     other_archs.empty() ? "none" : *other_archs.begin()));
      for (auto& [dtypes, points] : by_dtypes) {
        const auto p = priced.find(dtypes);
        if (p == priced.end()) {
          summary.skipped.push_back(fmt::format(
              "{}: {} '{}' rates: a dtype combination Odyssey does not price", file, points.size(), dtypes));
          continue;
        }
        const char* key = dtype_key(p->second);
        if (!base.peak.contains(p->second)) {
          summary.skipped.push_back(fmt::format("{}: {} '{}' rates: no {} peak in {}", file, points.size(),
                                                dtypes, key, base.name));
          continue;
        }
        // A rate above the peak it would be a fraction of was measured on another path (XLA runs
        // f32 matmuls on TF32 tensor cores by default): the whole dtype is left out, not capped.
        const auto fastest =
            std::max_element(points.begin(), points.end(), [](const GemmPoint& a, const GemmPoint& b) {
              return a.efficiency < b.efficiency;
            });
        if (fastest->efficiency > 1.0) {
          summary.skipped.push_back(fmt::format(
              "{}: {} '{}' rates: up to {:.4g} TFLOP/s, above the {} peak of {} ({}), so not {} rates", file,
              points.size(), dtypes, fastest->efficiency * base.peak.at(p->second).value() / 1e12, key,
              base.name, flop_rate(base.peak.at(p->second)), key));
          continue;
        }
        // The best single product and its shape: the GEMM model's main loop reproduces it there.
        const GemmPoint* best = nullptr;
        for (const GemmPoint& g : points) {
          if (g.batch == 1 && (!best || g.efficiency > best->efficiency)) best = &g;
        }
        if (best) {
          out.gemm_max_efficiency_by_dtype[p->second] = best->efficiency;
          out.gemm_best_shape[p->second] = {best->m, best->n, best->k};
        } else {
          out.gemm_max_efficiency_by_dtype[p->second] = fastest->efficiency;
          out.gemm_best_shape.erase(p->second);
        }
        out.gemm_points.insert(out.gemm_points.end(), points.begin(), points.end());
        out.tables.push_back(
            {.table = fmt::format("gemm {}", key),
             .source = fmt::format("{} ('{}' under {}; {})", table.source, dtypes, arch, file)});
        summary.measured.push_back(fmt::format(
            "gemm_points: {} {} shapes from {} ({}); gemm.max_efficiency.{} {} and gemm.best_shape (the best "
            "of them)",
            points.size(), key, file, arch, key, num(out.gemm_max_efficiency_by_dtype[p->second])));
      }
      sources.push_back(table.source);
    } else {
      const std::vector<FlashAttentionRow> rows = read_flash_attention_table(t.path);
      std::map<std::string, std::set<std::string>> table_sources; // "attention forward bf16" -> sources
      std::map<std::string, int> table_rows;
      int other_gpu = 0;
      for (const FlashAttentionRow& r : rows) {
        if (r.gpu != gpu) {
          ++other_gpu;
          continue;
        }
        const Precision dtype = r.dtype == "fp16"   ? Precision::FP16
                                : r.dtype == "bf16" ? Precision::BF16
                                                    : Precision::FP8;
        if (!base.peak.contains(dtype))
          throw InputError(r.where, "dtype",
                           fmt::format("no {} peak in {} to take a fraction of", r.dtype, base.name));
        const AttentionPoint a{.pass = r.pass == "forward" ? AttentionPass::FORWARD : AttentionPass::BACKWARD,
                               .head_dim = r.head_dim,
                               .seq = r.seq,
                               .causal = r.causal,
                               .dtype = dtype,
                               .efficiency =
                                   capped_fraction(r.tflops * 1e12 / base.peak.at(dtype).value(), capped)};
        out.attention_points.push_back(a);
        const std::string name = fmt::format("attention {} {}", r.pass, r.dtype);
        table_sources[name].insert(fmt::format("{}: {}", r.kernel, r.source));
        ++table_rows[name];
      }
      for (const auto& [name, srcs] : table_sources) {
        std::string joined;
        for (const std::string& src : srcs) joined += (joined.empty() ? "" : "; ") + src;
        out.tables.push_back({.table = name, .source = joined});
        summary.measured.push_back(
            fmt::format("attention_points: {} {} from {}", table_rows[name], name, file));
        sources.push_back(joined);
      }
      if (other_gpu > 0)
        summary.skipped.push_back(
            fmt::format("{}: {} for other GPUs", file, counted(long(other_gpu), "row")));
    }
  }
  for (const PublishedTable& t : o.published) {
    if (t.format == PublishedFormat::LAYER_TIMES) fit_layer_times(t.path, o, out, summary, sources);
    if (t.format == PublishedFormat::ASSUMED_TIME_SCALE) assume_time_scale(t.path, out, summary, sources);
  }
  if (out.tables.empty())
    throw InputError({.file = o.published.front().path}, "",
                     fmt::format("none of the tables has a row Odyssey can price on {}", gpu));
  if (capped > 0)
    summary.skipped.push_back(
        fmt::format("{} above the datasheet peak capped at 1", counted(long(capped), "rate")));
  summary.kept.insert(
      summary.kept.end(),
      {"peak", "gemm.sms", "gemm.tile", "attention.efficiency", "memory",
       out.kernel_time_scale != 1.0 ? "kernel.launch_overhead" : "kernel", "collective",
       out.nvlink.group_efficiency.empty() ? "links" : "links (but links.nvlink.group_efficiency)"});

  auto join = [](const std::vector<std::string>& items, const char* sep) {
    std::string joined;
    for (const std::string& s : items) joined += (joined.empty() ? "" : sep) + s;
    return joined;
  };
  // The date is the base's: the import adds no measurement of its own, and a rerun writes the
  // same file.
  out.provenance = {.kind = ProfileKind::PUBLISHED,
                    .source = "odyssey calibrate import of published tables: " + join(sources, "; ") +
                              "; everything else from " + base.name,
                    .date = base.provenance.date,
                    .notes = fmt::format("published (measured by others, not here): {}; from {}: {}",
                                         join(summary.measured, "; "), base.name, join(summary.kept, ", "))};
  std::string header =
      "# Published profile written by `odyssey calibrate import` from tables measured by others:\n";
  for (const PublishedTable& t : o.published)
    header += fmt::format("#   {}\n", fs::path(t.path).filename().string());
  header += fmt::format("# Values not in those tables come from {} ({}).\n", base.name,
                        to_string(base.provenance.kind));
  write_file_atomically(o.out, profile_yaml(out, header));
  load_profile(o.out); // what was written must read back
  return summary;
}

std::string scenario_shapes(const Workload& w) {
  std::vector<std::string> lines;
  std::set<std::string> seen;
  auto add = [&](const ComputeOp& op) {
    std::string line;
    if (op.kind == OpKind::GEMM) {
      const bool batched = op.name.rfind("attn_scores", 0) == 0 || op.name.rfind("attn_values", 0) == 0;
      const char* role = batched                           ? "batched"
                         : op.pass == Pass::FORWARD        ? "fprop"
                         : op.pass == Pass::BACKWARD_INPUT ? "dgrad"
                                                           : "wgrad";
      line = fmt::format("gemm {} {} {} {} {} {} {}", op.name, role, op.gemm.m, op.gemm.n, op.gemm.k,
                         op.gemm.batch, to_string(op.dtype));
    } else if (op.kind == OpKind::ATTENTION && op.pass == Pass::FORWARD) {
      // The attention benchmark measures the forward and backward pass of each shape.
      const AttentionShape& a = op.attention;
      line = fmt::format("attention {} {} {} {} {} {} {} {} {}", op.name, a.batch, a.heads, a.kv_heads,
                         a.seq_q, a.seq_kv, a.head_dim, a.causal ? 1 : 0, to_string(op.dtype));
    }
    if (!line.empty() && seen.insert(line).second) lines.push_back(line);
  };
  for (int s = 0; s < w.stages(); ++s) {
    for (int c = 0; c < w.chunks_per_stage(); ++c) {
      for (const ComputeOp& op : w.chunk(s, c).forward.compute) add(op);
      for (const ComputeOp& op : w.chunk(s, c).backward.compute) add(op);
    }
  }
  std::string out = "# shapes of one micro-batch on every pipeline stage (kernels/shapes.hpp format)\n";
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

} // namespace odyssey
