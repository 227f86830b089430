// Loading and choosing calibration profiles. The YAML format is described in
// calibration/README.md; every table is required so that a profile never silently falls back to a
// built-in number.
#include "calibration/profile.hpp"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <tuple>

#include <fmt/format.h>

#include "models/input/yaml_reader.hpp"

namespace odyssey {

namespace {

/// YAML keys of the dtypes a profile may list under `peak:` (tf32 is stored apart, see Profile).
constexpr std::pair<std::string_view, Precision> DTYPE_KEYS[] = {
    {"fp32", Precision::FP32}, {"fp16", Precision::FP16}, {"bf16", Precision::BF16}, {"fp8", Precision::FP8}};

Precision parse_dtype(const YamlValue& v) {
  return v.as_enum<Precision>({{"fp32", Precision::FP32},
                               {"fp16", Precision::FP16},
                               {"bf16", Precision::BF16},
                               {"fp8", Precision::FP8}});
}

/// A fraction in (0, 1]: efficiencies above 1 would make the model faster than the datasheet.
double parse_fraction(const YamlValue& v) {
  const double x = v.as_number();
  if (!(x > 0.0 && x <= 1.0)) v.fail("must be a fraction in (0, 1], got " + v.as_string());
  return x;
}

ProtocolLatency parse_protocol_latency(const YamlValue& v) {
  v.require_map();
  v.check_keys({"LL", "LL128", "Simple"});
  return ProtocolLatency{.ll = v.require("LL").as_seconds(),
                         .ll128 = v.require("LL128").as_seconds(),
                         .simple = v.require("Simple").as_seconds()};
}

LinkClassProfile parse_link_class(const YamlValue& v) {
  v.require_map();
  v.check_keys({"bandwidth", "bus_efficiency", "step_latency", "nvls_efficiency", "ring_channels",
                "group_efficiency"});
  LinkClassProfile link;
  link.bandwidth = v.require("bandwidth").as_byte_rate();
  link.bus_efficiency = parse_fraction(v.require("bus_efficiency"));
  link.step_latency_by_protocol = parse_protocol_latency(v.require("step_latency"));
  link.step_latency = link.step_latency_by_protocol.simple;
  if (auto nvls = v.get("nvls_efficiency")) link.nvls_efficiency = parse_fraction(*nvls);
  if (auto rings = v.get("ring_channels")) link.ring_channels = static_cast<int>(rings->as_positive_count());
  if (auto groups = v.get("group_efficiency")) {
    for (const YamlValue& g : groups->items()) {
      g.require_map();
      g.check_keys({"op", "ranks", "bus_efficiency"});
      const YamlValue op = g.require("op");
      const std::string name = op.as_string();
      const auto kind = collective_named(name);
      if (!kind) op.fail_choice(name, collective_name_list());
      GroupEfficiency e{.kind = *kind};
      const YamlValue ranks = g.require("ranks");
      e.ranks = static_cast<int>(ranks.as_positive_count());
      if (e.ranks < 2) ranks.fail("a collective needs at least 2 ranks, got " + ranks.as_string());
      e.bus_efficiency = parse_fraction(g.require("bus_efficiency"));
      for (const GroupEfficiency& seen : link.group_efficiency)
        if (seen.kind == e.kind && seen.ranks == e.ranks)
          g.fail(fmt::format("{} over {} ranks appears twice", name, e.ranks));
      link.group_efficiency.push_back(e);
    }
  }
  return link;
}

void parse_peak(const YamlValue& v, Profile& p) {
  v.require_map();
  v.check_keys({"fp32", "tf32", "fp16", "bf16", "fp8"});
  for (const auto& [key, dtype] : DTYPE_KEYS) {
    if (auto rate = v.get(key)) p.peak[dtype] = rate->as_flop_rate();
  }
  if (auto tf32 = v.get("tf32")) p.tf32_peak = tf32->as_flop_rate();
  if (p.peak.empty()) v.fail("lists no dtype peak (expected at least one of fp32, fp16, bf16, fp8)");
}

/// A table keyed by dtype (fp32, fp16, bf16, fp8): calls `each(key, dtype, value)` for every dtype
/// it lists, in DTYPE_KEYS order; another key is an error at its position.
template <class Each> void for_each_dtype(const YamlValue& table, Each each) {
  table.require_map();
  table.check_keys({"fp32", "fp16", "bf16", "fp8"});
  for (const auto& [key, dtype] : DTYPE_KEYS)
    if (auto value = table.get(key)) each(key, dtype, *value);
}

void parse_gemm(const YamlValue& v, Profile& p) {
  v.require_map();
  v.check_keys({"sms", "tile", "tiles", "k_block", "fill", "max_split_k", "max_efficiency", "best_shape",
                "sustained"});
  p.sms = static_cast<int>(v.require("sms").as_positive_count());
  auto read_tile = [](const YamlValue& t) {
    t.require_map();
    t.check_keys({"m", "n"});
    return GemmTile{.m = t.require("m").as_positive_count(), .n = t.require("n").as_positive_count()};
  };
  const GemmTile usual = read_tile(v.require("tile"));
  p.gemm_tile_m = usual.m;
  p.gemm_tile_n = usual.n;
  if (auto tiles = v.get("tiles")) {
    if (!tiles->is_sequence() || tiles->items().empty()) tiles->fail("expected a list of {m, n} tiles");
    for (const YamlValue& t : tiles->items()) p.gemm_tiles.push_back(read_tile(t));
  }
  if (auto kb = v.get("k_block")) p.gemm_k_block = kb->as_positive_count();
  if (auto fill = v.get("fill")) {
    p.gemm_fill = fill->as_number();
    if (p.gemm_fill < 0 || p.gemm_fill > 64) fill->fail("expected 0 to 64 main-loop iterations");
  }
  if (auto split = v.get("max_split_k")) {
    const long s = split->as_positive_count();
    if (s > 64) split->fail("expected at most 64 slices");
    p.gemm_max_split_k = static_cast<int>(s);
  }
  const YamlValue best = v.require("max_efficiency");
  double highest = 0.0;
  for_each_dtype(best, [&](std::string_view key, Precision dtype, const YamlValue& e) {
    p.gemm_max_efficiency_by_dtype[dtype] = parse_fraction(e);
    highest = std::max(highest, p.gemm_max_efficiency_by_dtype[dtype]);
    if (!p.peak.contains(dtype))
      e.fail("has no matching peak: list " + std::string(key) + " under peak first");
  });
  if (highest == 0.0) best.fail("lists no dtype (expected at least one of fp32, fp16, bf16, fp8)");
  if (auto shapes = v.get("best_shape")) {
    for_each_dtype(*shapes, [&](std::string_view key, Precision dtype, const YamlValue& shape) {
      if (!best.get(key))
        shape.fail("has no max_efficiency to go with: list " + std::string(key) + " there first");
      shape.require_map();
      shape.check_keys({"m", "n", "k"});
      p.gemm_best_shape[dtype] = {shape.require("m").as_positive_count(),
                                  shape.require("n").as_positive_count(),
                                  shape.require("k").as_positive_count()};
    });
  }
  if (auto sustained = v.get("sustained")) {
    for_each_dtype(*sustained, [&](std::string_view key, Precision dtype, const YamlValue& f) {
      if (!p.peak.contains(dtype))
        f.fail("has no matching peak: list " + std::string(key) + " under peak first");
      p.gemm_sustained[dtype] = parse_fraction(f);
    });
  }
  p.gemm_max_efficiency = highest;
}

void parse_gemm_points(const YamlValue& v, Profile& p) {
  if (!v.is_sequence()) v.fail("expected a list of {m, n, k, dtype, efficiency} (optional batch, default 1)");
  for (const YamlValue& item : v.items()) {
    item.require_map();
    item.check_keys({"m", "n", "k", "batch", "dtype", "efficiency"});
    GemmPoint g;
    g.m = item.require("m").as_positive_count();
    g.n = item.require("n").as_positive_count();
    g.k = item.require("k").as_positive_count();
    if (auto batch = item.get("batch")) g.batch = batch->as_positive_count();
    const YamlValue dtype = item.require("dtype");
    g.dtype = parse_dtype(dtype);
    if (!p.peak.contains(g.dtype)) dtype.fail("the profile has no peak for " + dtype.as_string());
    g.efficiency = parse_fraction(item.require("efficiency"));
    p.gemm_points.push_back(g);
  }
}

void parse_attention_points(const YamlValue& v, Profile& p) {
  if (!v.is_sequence()) v.fail("expected a list of {pass, head_dim, seq, causal, dtype, efficiency}");
  for (const YamlValue& item : v.items()) {
    item.require_map();
    item.check_keys({"pass", "head_dim", "seq", "causal", "dtype", "efficiency"});
    AttentionPoint a;
    a.pass = item.require("pass").as_enum<AttentionPass>(
        {{"forward", AttentionPass::FORWARD}, {"backward", AttentionPass::BACKWARD}});
    a.head_dim = static_cast<int>(item.require("head_dim").as_positive_count());
    a.seq = item.require("seq").as_positive_count();
    a.causal = item.require("causal").as_bool();
    const YamlValue dtype = item.require("dtype");
    a.dtype = parse_dtype(dtype);
    if (!p.peak.contains(a.dtype)) dtype.fail("the profile has no peak for " + dtype.as_string());
    a.efficiency = parse_fraction(item.require("efficiency"));
    p.attention_points.push_back(a);
  }
}

void parse_tables(const YamlValue& v, Profile& p) {
  if (!v.is_sequence()) v.fail("expected a list of {table, source}");
  for (const YamlValue& item : v.items()) {
    item.require_map();
    item.check_keys({"table", "source"});
    TableSource t;
    const YamlValue table = item.require("table");
    t.table = table.as_string();
    if (t.table.empty()) table.fail("must name the table, e.g. \"gemm bf16\"");
    const YamlValue source = item.require("source");
    t.source = source.as_string();
    if (t.source.empty()) source.fail("must cite where the table comes from");
    p.tables.push_back(std::move(t));
  }
}

} // namespace

Seconds ProtocolLatency::at(Protocol p) const {
  switch (p) {
  case Protocol::LL: return ll;
  case Protocol::LL128: return ll128;
  case Protocol::SIMPLE: return simple;
  }
  return simple;
}

const char* to_string(ProfileKind k) {
  switch (k) {
  case ProfileKind::DATASHEET: return "datasheet";
  case ProfileKind::PUBLISHED: return "published";
  case ProfileKind::MEASURED: return "measured";
  }
  return "datasheet";
}

const char* to_string(Protocol p) {
  switch (p) {
  case Protocol::LL: return "LL";
  case Protocol::LL128: return "LL128";
  case Protocol::SIMPLE: return "Simple";
  }
  return "Simple";
}

Profile load_profile(const std::string& path) {
  const YamlValue root = load_yaml_file(path);
  root.require_map();
  root.check_keys({"format", "gpu", "kind", "provenance", "peak", "gemm", "gemm_points", "attention",
                   "attention_points", "tables", "memory", "kernel", "collective", "links"});

  // The version is checked before anything else so that a newer file fails on its version, not
  // on whichever key it renamed.
  const YamlValue format = root.require("format");
  if (format.as_string() != PROFILE_FORMAT) {
    format.fail("unsupported profile format '" + format.as_string() + "' (expected " + PROFILE_FORMAT + ")");
  }

  Profile p;
  p.path = path;
  p.name = std::filesystem::path(path).stem().string();
  const YamlValue gpu = root.require("gpu");
  p.gpu = gpu.as_string();
  p.gpu_where = gpu.where();
  if (p.gpu.empty()) gpu.fail("must name a GPU type, e.g. H100-SXM5-80GB");

  const YamlValue kind = root.require("kind");
  p.provenance.kind = kind.as_enum<ProfileKind>({{"datasheet", ProfileKind::DATASHEET},
                                                 {"published", ProfileKind::PUBLISHED},
                                                 {"measured", ProfileKind::MEASURED}});
  const YamlValue prov = root.require("provenance");
  prov.require_map();
  prov.check_keys({"source", "date", "notes"});
  p.provenance.source = prov.require("source").as_string();
  const YamlValue date = prov.require("date");
  p.provenance.date = date.as_string();
  // ISO dates order correctly as strings, which find_profile relies on.
  const std::string& d = p.provenance.date;
  const bool iso = d.size() == 10 && d[4] == '-' && d[7] == '-' &&
                   std::all_of(d.begin(), d.end(), [](char c) { return c == '-' || (c >= '0' && c <= '9'); });
  if (!iso) date.fail("expected an ISO date YYYY-MM-DD, got '" + d + "'");
  if (auto notes = prov.get("notes")) p.provenance.notes = notes->as_string();

  parse_peak(root.require("peak"), p);
  parse_gemm(root.require("gemm"), p);
  if (auto points = root.get("gemm_points")) parse_gemm_points(*points, p);

  const YamlValue attention = root.require("attention");
  attention.require_map();
  attention.check_keys({"efficiency", "backward_efficiency", "flash_attention_2"});
  p.attention_efficiency = parse_fraction(attention.require("efficiency"));
  if (auto bwd = attention.get("backward_efficiency")) p.attention_backward_efficiency = parse_fraction(*bwd);
  if (auto fa2 = attention.get("flash_attention_2")) {
    fa2->require_map();
    fa2->check_keys({"efficiency", "backward_efficiency"});
    p.attention_fa2_efficiency = parse_fraction(fa2->require("efficiency"));
    p.attention_fa2_backward_efficiency = parse_fraction(fa2->require("backward_efficiency"));
  }
  if (auto points = root.get("attention_points")) parse_attention_points(*points, p);
  if (auto tables = root.get("tables")) parse_tables(*tables, p);
  // A published profile rests on others' measurements: it must say whose, table by table.
  if (p.provenance.kind == ProfileKind::PUBLISHED && p.tables.empty())
    kind.fail("a published profile must list its tables and their sources under 'tables'");

  const YamlValue memory = root.require("memory");
  memory.require_map();
  memory.check_keys({"bandwidth", "efficiency"});
  p.memory_bandwidth = memory.require("bandwidth").as_byte_rate();
  p.memory_efficiency = parse_fraction(memory.require("efficiency"));

  const YamlValue kernel = root.require("kernel");
  kernel.require_map();
  kernel.check_keys({"launch_overhead", "time_scale"});
  p.launch_overhead = kernel.require("launch_overhead").as_seconds();
  if (auto scale = kernel.get("time_scale")) {
    p.kernel_time_scale = scale->as_number();
    if (!(p.kernel_time_scale >= KERNEL_TIME_SCALE_MIN && p.kernel_time_scale <= KERNEL_TIME_SCALE_MAX))
      scale->fail(fmt::format("expected a number from {} to {}, got {}", KERNEL_TIME_SCALE_MIN,
                              KERNEL_TIME_SCALE_MAX, scale->as_string()));
    if (p.kernel_time_scale != 1.0 && p.provenance.kind == ProfileKind::DATASHEET)
      scale->fail("only a published or measured profile may scale kernel times: it rests on a measurement");
  }

  const YamlValue collective = root.require("collective");
  collective.require_map();
  collective.check_keys({"base_latency", "tree_channel_bandwidth"});
  p.collective_base_latency_by_protocol = parse_protocol_latency(collective.require("base_latency"));
  if (auto cap = collective.get("tree_channel_bandwidth")) {
    cap->require_map();
    cap->check_keys({"one_server", "two_servers", "more_servers"});
    p.tree_channel_bandwidth = {.one_server = cap->require("one_server").as_byte_rate(),
                                .two_servers = cap->require("two_servers").as_byte_rate(),
                                .more_servers = cap->require("more_servers").as_byte_rate()};
  }
  p.collective_base_latency = p.collective_base_latency_by_protocol.simple;

  const YamlValue links = root.require("links");
  links.require_map();
  links.check_keys({"nvlink", "pcie", "net"});
  p.nvlink = parse_link_class(links.require("nvlink"));
  p.pcie = parse_link_class(links.require("pcie"));
  p.net = parse_link_class(links.require("net"));
  return p;
}

std::string kernel_time_scale_origin(const Profile& p) {
  // An assumed factor's source names the GPU it was measured on and says ASSUMED.
  for (const TableSource& t : p.tables)
    if (t.table == LAYER_TIMES_TABLE || t.table == ASSUMED_TIME_SCALE_TABLE)
      return "the layer times measured in " + t.source;
  return "set in " + (p.path.empty() ? p.name : p.path);
}

void check_profile_gpu(const Profile& profile, const std::string& gpu, const std::string& machine) {
  if (profile.gpu == gpu) return;
  SourceLocation where = profile.gpu_where;
  if (where.file.empty()) where.file = profile.path;
  throw InputError(where, "gpu",
                   "profile " + profile.name + " describes GPU '" + profile.gpu + "' but machine '" +
                       machine + "' has '" + gpu + "'");
}

std::string find_profile(const std::string& directory, const std::string& gpu) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::directory_iterator it(directory, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file() && it->path().extension() == ".yaml") files.push_back(it->path().string());
  }
  if (ec)
    throw InputError(SourceLocation{.file = directory}, "calibration",
                     "cannot read profile directory: " + ec.message());
  // Directory order is filesystem-dependent; sorting keeps the choice and the message deterministic.
  std::sort(files.begin(), files.end());

  std::vector<std::string> available;
  std::optional<Profile> best;
  // measured > published > datasheet (the enum's order), then the newest date, then the first
  // name: a tuple compares in that order.
  auto rank = [](const Profile& p) {
    return std::make_tuple(static_cast<int>(p.provenance.kind), p.provenance.date);
  };
  for (const std::string& file : files) {
    Profile p = load_profile(file);
    if (std::find(available.begin(), available.end(), p.gpu) == available.end()) available.push_back(p.gpu);
    if (p.gpu != gpu) continue;
    if (!best || rank(p) > rank(*best)) best = std::move(p);
  }
  if (!best) {
    std::sort(available.begin(), available.end());
    std::string list;
    for (const std::string& name : available) list += (list.empty() ? "" : ", ") + name;
    if (list.empty()) list = "none";
    throw InputError(SourceLocation{.file = directory}, "calibration",
                     "no calibration profile for GPU '" + gpu + "' in " + directory + " (available: " + list +
                         ")");
  }
  return best->path;
}

double LinkClassProfile::ring_efficiency(CollectiveKind kind, int ranks) const {
  const GroupEfficiency* below = nullptr;
  const GroupEfficiency* above = nullptr;
  for (const GroupEfficiency& g : group_efficiency) {
    if (g.kind != kind) continue;
    if (g.ranks == ranks) return g.bus_efficiency;
    if (g.ranks < ranks && (below == nullptr || g.ranks > below->ranks)) below = &g;
    if (g.ranks > ranks && (above == nullptr || g.ranks < above->ranks)) above = &g;
  }
  if (below != nullptr && above != nullptr) {
    const double t = double(ranks - below->ranks) / double(above->ranks - below->ranks);
    return below->bus_efficiency + t * (above->bus_efficiency - below->bus_efficiency);
  }
  if (below != nullptr) return below->bus_efficiency;
  if (above != nullptr) return above->bus_efficiency;
  return bus_efficiency;
}

std::string sustained_text(const Profile& profile) {
  std::string rates;
  for (const auto& [dtype, fraction] : profile.gemm_sustained)
    rates += fmt::format("{}{} x{}", rates.empty() ? "" : ", ", to_string(dtype), fraction);
  if (rates.empty()) return {};
  return "tensor-core kernels (GEMMs, fused attention) at " + rates +
         " of their measured rate: what the board sustains at its power limit (gemm.sustained)";
}

} // namespace odyssey
