#include "models/offload.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "models/workload.hpp"

namespace odyssey {
namespace {

/// fp32 gradients CPU-Adam reads, per parameter of the offloaded partition.
constexpr double HOST_GRADIENT_BYTES = 4.0;

double gib(Bytes b) {
  return b.value() / (1024.0 * 1024.0 * 1024.0);
}

Seconds at_rate(double bytes, BytesPerSecond rate) {
  return rate.value() > 0 ? Seconds(bytes / rate.value()) : Seconds(0);
}

Seconds beyond(Seconds work, Seconds window) {
  return Seconds(std::max(0.0, work.value() - window.value()));
}

} // namespace

double cpu_adam_rate(const HostResources& host, const CpuAdamRate& rate) {
  const double cores = host.cores * rate.parameters_per_s_per_core;
  if (rate.bytes_per_parameter <= 0 || host.host.memory_bandwidth.value() <= 0) return cores;
  return std::min(cores, host.host.memory_bandwidth.value() / rate.bytes_per_parameter);
}

std::optional<StrategyProblem> check_offload(const ParallelismSpec& p, const HostResources& host) {
  const OffloadSpec& o = p.offload;
  if (!o.any()) {
    if (o.delayed_update)
      return StrategyProblem{"parallelism.offload.delayed_update",
                             "the delayed parameter update overlaps the host's optimizer step: it needs "
                             "parallelism.offload.optimizer: cpu or nvme"};
    return std::nullopt;
  }
  if (o.optimizer != OffloadDevice::NONE && p.zero < 1)
    return StrategyProblem{"parallelism.offload.optimizer",
                           "DeepSpeed offloads the optimizer with ZeRO stage 1, 2 or 3: set parallelism.zero "
                           "to 1 or more (it is 0)"};
  if (o.params != OffloadDevice::NONE && p.zero != 3)
    return StrategyProblem{"parallelism.offload.params",
                           fmt::format("parameters are offloaded only with ZeRO-3 (ZeRO-Infinity), which "
                                       "gathers them before use: parallelism.zero is {}",
                                       p.zero)};
  if (o.params != OffloadDevice::NONE && o.optimizer == OffloadDevice::NONE)
    return StrategyProblem{"parallelism.offload.params",
                           "offloading parameters but not the optimizer is not modelled: set "
                           "parallelism.offload.optimizer too"};
  const std::string key =
      o.optimizer != OffloadDevice::NONE ? "parallelism.offload.optimizer" : "parallelism.offload.params";
  if (host.host.memory.value() <= 0)
    return StrategyProblem{key, "the machine describes no host memory (server.host_memory) to offload to"};
  if (host.host.memory_bandwidth.value() <= 0)
    return StrategyProblem{key,
                           "the machine describes no host memory bandwidth (server.host_memory_bandwidth), "
                           "which CPU-Adam's rate depends on"};
  if (host.cores < 1)
    return StrategyProblem{key,
                           "the machine describes no host CPU cores (server.cpu_cores) to run CPU-Adam on"};
  if (host.pcie.value() <= 0)
    return StrategyProblem{key,
                           "the machine describes no PCIe link between GPU and host (server.pcie_bandwidth)"};
  for (const auto& [device, name] : {std::pair{o.optimizer, "parallelism.offload.optimizer"},
                                     std::pair{o.params, "parallelism.offload.params"}})
    if (device == OffloadDevice::NVME &&
        (host.host.nvme.value() <= 0 || host.host.nvme_bandwidth.value() <= 0))
      return StrategyProblem{name, "offload to nvme, but the machine's servers have no local NVMe "
                                   "(server.nvme and server.nvme_bandwidth)"};
  return std::nullopt;
}

OffloadMemory offload_memory(const Workload& w, int stage) {
  const OffloadSpec& o = w.parallelism().offload;
  const Precision precision = w.training().precision;
  const double shard = w.optimizer_shard_parameters(stage);
  OffloadMemory m;
  if (o.optimizer != OffloadDevice::NONE) {
    const Bytes states(shard * optimizer_state_bytes(precision));
    m.host += Bytes(shard * HOST_GRADIENT_BYTES);
    (o.optimizer == OffloadDevice::NVME ? m.nvme : m.host) += states;
  }
  if (o.params != OffloadDevice::NONE) {
    const Bytes weights(shard * weight_element_bytes(precision));
    (o.params == OffloadDevice::NVME ? m.nvme : m.host) += weights;
  }
  return m;
}

Bytes checkpoint_bytes_in_host_memory(const Workload& w) {
  const OffloadSpec& o = w.parallelism().offload;
  const Precision precision = w.training().precision;
  double per_parameter = 0.0;
  if (o.optimizer == OffloadDevice::CPU) per_parameter += optimizer_state_bytes(precision);
  if (o.params == OffloadDevice::CPU) per_parameter += weight_element_bytes(precision);
  return Bytes(w.parameters() * per_parameter);
}

HostFit host_fit(const Workload& w, const HostResources& host) {
  HostFit fit;
  for (int s = 0; s < w.stages(); ++s) {
    const OffloadMemory m = offload_memory(w, s);
    fit.host_per_gpu = std::max(fit.host_per_gpu, m.host);
    fit.nvme_per_gpu = std::max(fit.nvme_per_gpu, m.nvme);
  }
  fit.host_per_server = fit.host_per_gpu * double(host.gpus);
  fit.nvme_per_server = fit.nvme_per_gpu * double(host.gpus);
  fit.host_capacity = host.host.memory;
  fit.nvme_capacity = host.host.nvme;
  fit.host_fits = fit.host_per_server <= fit.host_capacity;
  fit.nvme_fits = fit.nvme_per_server <= fit.nvme_capacity;
  return fit;
}

std::string host_fit_problem(const HostFit& fit, int gpus) {
  if (!fit.host_fits)
    return fmt::format(
        "offloaded states need {:.1f} GiB of host memory per server ({} GPUs x {:.1f} GiB) but "
        "a server has {:.1f} GiB",
        gib(fit.host_per_server), gpus, gib(fit.host_per_gpu), gib(fit.host_capacity));
  if (!fit.nvme_fits)
    return fmt::format("offloaded states need {:.1f} GiB of NVMe per server ({} GPUs x {:.1f} GiB) but a "
                       "server has {:.1f} GiB",
                       gib(fit.nvme_per_server), gpus, gib(fit.nvme_per_gpu), gib(fit.nvme_capacity));
  return "";
}

OverlapWindows overlap_windows(const Workload& w, int stage,
                               const std::function<Seconds(const WorkBlock&)>& compute_time) {
  OverlapWindows windows;
  for (const PipelineStep& step : w.schedule(stage)) {
    const ChunkWork& c = w.chunk(stage, step.chunk);
    const WorkBlock& block = step.kind == StepKind::FORWARD          ? c.forward
                             : step.kind == StepKind::BACKWARD       ? c.backward
                             : step.kind == StepKind::BACKWARD_INPUT ? c.backward_input
                                                                     : c.backward_weight;
    const Seconds t = compute_time(block);
    windows.forward_backward += t;
    if (step.kind != StepKind::FORWARD) windows.backward += t;
  }
  return windows;
}

OffloadStep offload_step(const Workload& w, int stage, const HostResources& host, const CpuAdamRate& rate,
                         const OverlapWindows& windows) {
  OffloadStep step;
  const OffloadSpec& o = w.parallelism().offload;
  if (!o.any()) return step;
  const Precision precision = w.training().precision;
  const double shard = w.optimizer_shard_parameters(stage);
  const double sharing = std::max(host.gpus, 1);
  step.gradients_to_host = at_rate(shard * gradient_element_bytes(w.training()), host.pcie);
  step.parameters_to_device = at_rate(shard * weight_element_bytes(precision), host.pcie);
  const double server_rate = cpu_adam_rate(host, rate);
  if (server_rate > 0) step.cpu_adam = Seconds(shard * sharing / server_rate);
  if (o.optimizer == OffloadDevice::NVME)
    step.nvme = at_rate(2.0 * shard * optimizer_state_bytes(precision) * sharing, host.host.nvme_bandwidth);
  if (o.params != OffloadDevice::NONE) {
    // Every micro-batch's forward and backward gather the parameters: each rank fetches its shard.
    const double fetched = 2.0 * w.microbatches() * shard * weight_element_bytes(precision);
    step.parameter_fetch = at_rate(fetched, host.pcie);
    if (o.params == OffloadDevice::NVME)
      step.parameter_fetch =
          std::max(step.parameter_fetch, at_rate(fetched * sharing, host.host.nvme_bandwidth));
  }
  const Seconds host_step = step.nvme + step.cpu_adam + step.parameters_to_device;
  step.exposed = beyond(step.gradients_to_host, windows.backward) +
                 (o.delayed_update ? beyond(host_step, windows.forward_backward) : host_step) +
                 beyond(step.parameter_fetch, windows.forward_backward);
  return step;
}

} // namespace odyssey
