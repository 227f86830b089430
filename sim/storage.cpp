#include "sim/storage.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <simgrid/kernel/routing/NetPoint.hpp>
#include <simgrid/s4u.hpp>

#include "models/input/diagnostics.hpp"
#include "sim/isolation.hpp"
#include "sim/platform.hpp"

XBT_LOG_NEW_DEFAULT_CATEGORY(odyssey_storage, "Odyssey storage system and checkpoints");

namespace odyssey {
namespace {

namespace sg4 = simgrid::s4u;

/// Per server: its storage NIC(s), or its fabric NICs where the machine names none.
BytesPerSecond client_bandwidth(const MachineSpec& m) {
  if (m.storage.client_bandwidth.value() > 0) return m.storage.client_bandwidth;
  return m.server.nic_bandwidth * static_cast<double>(m.server.nics);
}

/// Simulated times of one write to and one read from the storage, one flow per client.
struct StorageTimes {
  Seconds write;
  Seconds read;
};

/// The storage network of `clients` GPU servers: a star whose centre is the storage network;
/// each client host (the server's CPUs) reaches it through its storage NIC link, the storage
/// system (one host) through a link of the aggregate bandwidth. Each client moves
/// `bytes_per_client[i]` to the storage, all at once, after the metadata latency; then reads it
/// back the same way.
/// Each client writes at most `write_rate` (its path to storage, or what a drain may take of it)
/// and reads at its whole path's bandwidth.
StorageTimes simulate_storage(const MachineSpec& m, const std::vector<Bytes>& bytes_per_client,
                              BytesPerSecond write_rate) {
  const std::string text = sim::run_isolated([&] {
    const auto engine = sim::make_engine({});
    auto* zone = sg4::create_star_zone("storage-network");
    const double client_bw = client_bandwidth(m).value();
    auto attach = [&](sg4::Host* host, const std::string& name, double bandwidth) {
      auto* duplex = zone->create_split_duplex_link(name, bandwidth);
      duplex->set_latency(0)->seal();
      zone->add_route(host->get_netpoint(), nullptr, nullptr, nullptr,
                      {sg4::LinkInRoute(duplex, sg4::LinkInRoute::Direction::UP)}, true);
      return duplex;
    };
    auto* storage = zone->create_host("storage", 1e9);
    attach(storage, "storage-aggregate", m.storage.bandwidth.value());
    std::vector<sg4::Host*> clients;
    for (std::size_t c = 0; c < bytes_per_client.size(); ++c) {
      auto* host =
          zone->create_host(fmt::format("host-{}", c), 1e9)->set_core_count(std::max(1, m.server.cpu_cores));
      // The write goes up the client's link, the read comes down it.
      auto* link = attach(host, fmt::format("storage-nic-{}", c), client_bw);
      link->get_link_up()->set_bandwidth(std::min(client_bw, write_rate.value()));
      clients.push_back(host);
    }
    zone->seal();

    const double metadata = m.storage.metadata_latency.value();
    std::vector<double> written(clients.size(), 0.0);
    std::vector<double> read(clients.size(), 0.0);
    auto barrier = sg4::Barrier::create(static_cast<unsigned>(clients.size()));
    double read_start = 0.0;
    for (std::size_t c = 0; c < clients.size(); ++c) {
      const auto size = static_cast<std::uint64_t>(std::max(1.0, bytes_per_client[c].value()));
      // One actor per client, as on the machine each server writes its own shards.
      sg4::Actor::create(fmt::format("writer-{}", c), clients[c], [&, c, size] {
        if (metadata > 0) sg4::this_actor::sleep_for(metadata);
        sg4::Comm::sendto(clients[c], storage, size);
        written[c] = sg4::Engine::get_clock();
        barrier->wait();
        if (c == 0) read_start = sg4::Engine::get_clock();
        if (metadata > 0) sg4::this_actor::sleep_for(metadata);
        sg4::Comm::sendto(storage, clients[c], size);
        read[c] = sg4::Engine::get_clock();
      });
    }
    engine->run();
    const double w = *std::max_element(written.begin(), written.end());
    const double r = *std::max_element(read.begin(), read.end()) - read_start;
    XBT_DEBUG("storage: %zu clients, write %g s, read %g s", clients.size(), w, r);
    return fmt::format("{} {}", w, r);
  });
  const auto space = text.find(' ');
  return StorageTimes{.write = Seconds(std::stod(text.substr(0, space))),
                      .read = Seconds(std::stod(text.substr(space + 1)))};
}

} // namespace

Seconds host_copy_time(const ServerSpec& server, Bytes per_gpu) {
  if (!(server.pcie_bandwidth.value() > 0)) return Seconds(0);
  const int sharing = server.pcie_switches > 0 ? server.gpus / server.pcie_switches : 1;
  return per_gpu * static_cast<double>(sharing) / server.pcie_bandwidth;
}

void check_checkpoint_fits(const StorageSpec& storage, Bytes size) {
  const Bytes capacity = storage.capacity;
  if (storage.modelled() && capacity.value() > 0 && size.value() > capacity.value())
    throw InputError(SourceLocation{}, "storage.capacity",
                     fmt::format("the checkpoint (weights and optimizer states, {:.3g} TB) does not fit the "
                                 "storage's {:.3g} TB",
                                 size.value() / 1e12, capacity.value() / 1e12));
}

Bytes checkpoint_per_server(const MachineSpec& machine, Bytes size, long gpus) {
  if (gpus <= 0) return Bytes(0);
  return size / static_cast<double>(gpus) * static_cast<double>(std::min<long>(gpus, machine.server.gpus));
}

void check_checkpoint_first_level(const MachineSpec& machine, const CheckpointSpec& policy, Bytes size,
                                  long gpus) {
  if (policy.mode != CheckpointMode::ASYNC || policy.first_level != CheckpointLevel::NVME) return;
  const Bytes per_server = checkpoint_per_server(machine, size, gpus);
  if (per_server > machine.server.host.nvme)
    throw InputError(SourceLocation{}, "checkpoint.first_level",
                     fmt::format("a server's shards of the checkpoint ({:.3g} GB) do not fit its local NVMe "
                                 "({:.3g} GB, machine.server.nvme)",
                                 per_server.value() / 1e9, machine.server.host.nvme.value() / 1e9));
}

CheckpointPlan plan_checkpoint(const MachineSpec& machine, Bytes size, long gpus,
                               const CheckpointWriting& how) {
  CheckpointPlan plan;
  plan.policy = how.policy;
  check_checkpoint_fits(machine.storage, size);
  if (!machine.storage.modelled() || gpus <= 0) return plan;
  const int per_server = machine.server.gpus;
  plan.modelled = true;
  plan.total = size;
  plan.per_gpu = size / static_cast<double>(gpus);
  plan.servers = (gpus + per_server - 1) / per_server;
  plan.per_server = checkpoint_per_server(machine, size, gpus);
  check_checkpoint_first_level(machine, how.policy, size, gpus);
  plan.client_bandwidth = client_bandwidth(machine);
  plan.storage_bandwidth = machine.storage.bandwidth;
  std::vector<Bytes> clients(static_cast<std::size_t>(plan.servers), plan.per_server);
  // A last server the job fills only in part writes only its GPUs' shards.
  clients.back() = plan.per_gpu * static_cast<double>(gpus - (plan.servers - 1) * per_server);
  const bool async = how.policy.mode == CheckpointMode::ASYNC;
  const bool nvme = async && how.policy.first_level == CheckpointLevel::NVME;
  const HostSpec& host = machine.server.host;
  const Bytes on_gpu = (size - std::min(how.in_host_memory, size)) / static_cast<double>(gpus);
  plan.device_to_host = host_copy_time(machine.server, on_gpu);
  plan.host_to_device = plan.device_to_host;
  // Staged to NVMe, the copy streams through a pinned host buffer (ASSUMPTION: chunked, as
  // staged checkpointing does), so the slower of PCIe and the NVMe write sets it.
  plan.to_first_level =
      nvme ? std::max(plan.device_to_host, plan.per_server / host.nvme_bandwidth) : plan.device_to_host;
  // What the write, or the drain, may use per server; the storage's aggregate may bind lower.
  plan.shares_fabric = !(machine.storage.client_bandwidth.value() > 0);
  plan.write_rate = plan.client_bandwidth;
  plan.write_limit = plan.shares_fabric ? "the fabric NICs" : "the storage NICs";
  auto cap = [&](BytesPerSecond rate, const char* why) {
    if (rate < plan.write_rate) {
      plan.write_rate = rate;
      plan.write_limit = why;
    }
  };
  if (async) {
    if (plan.shares_fabric)
      // At least a thousandth of them: a drain that never ends answers nothing.
      cap(plan.client_bandwidth * std::clamp(1.0 - how.fabric_nic_busy, 1e-3, 1.0),
          "what training leaves of the fabric NICs");
    if (nvme) cap(host.nvme_bandwidth, "reading the NVMe");
    if (how.policy.drain_bandwidth.value() > 0) cap(how.policy.drain_bandwidth, "checkpoint.drain_bandwidth");
  }
  const StorageTimes t = simulate_storage(machine, clients, plan.write_rate);
  plan.to_storage = t.write;
  plan.from_storage = t.read;
  return plan;
}

Seconds DataLoading::loader() const {
  return std::max({storage, cpu, network, pcie});
}

Seconds DataLoading::stall() const {
  return std::max(Seconds(0), loader() - iteration);
}

double DataLoading::headroom() const {
  return loader().value() > 0 ? iteration / loader() : 0.0;
}

std::string DataLoading::bottleneck() const {
  const Seconds slowest = loader();
  if (slowest == storage) return "storage";
  if (slowest == cpu) return "cpu";
  if (slowest == network) return "network";
  return "pcie";
}

DataLoading plan_data_loading(const MachineSpec& machine, const DataSpec& spec, const DataJob& job,
                              Seconds iteration) {
  constexpr double GPU_BYTES_PER_TOKEN = 16; // int64 tokens and labels
  DataLoading d{.spec = spec, .iteration = iteration};
  const int per_server = machine.server.gpus;
  const long first_stage = job.gpus / std::max(1, job.pp);
  d.gpu_servers = std::max(1L, (first_stage + per_server - 1) / per_server);
  const bool service = spec.service == DataService::CPU_HOSTS;
  d.loaders = service ? std::max(1, machine.cpu_hosts.count) : d.gpu_servers;
  d.samples = static_cast<double>(job.global_batch) / static_cast<double>(d.loaders);
  d.sample_bytes = data_bytes_per_token(spec, job.vocab) * static_cast<double>(job.seq_len + 1);
  d.cpu_per_sample = data_cpu_per_sample(spec, d.sample_bytes);
  if (machine.storage.modelled()) {
    // Every loader reads at once: each gets its share of the storage, within its own NICs.
    BytesPerSecond rate = machine.storage.bandwidth / static_cast<double>(d.loaders);
    if (!service) rate = std::min(rate, client_bandwidth(machine));
    d.storage = d.sample_bytes * d.samples / rate;
  }
  d.cpu = d.cpu_per_sample * d.samples / static_cast<double>(std::max(1, spec.workers));
  const double server_samples = static_cast<double>(job.global_batch) / static_cast<double>(d.gpu_servers);
  const Bytes to_gpus = Bytes(server_samples * job.seq_len * GPU_BYTES_PER_TOKEN);
  if (service)
    d.network = to_gpus / (machine.server.nic_bandwidth * static_cast<double>(machine.server.nics));
  if (machine.server.pcie_bandwidth.value() > 0) d.pcie = to_gpus / machine.server.pcie_bandwidth;
  return d;
}

} // namespace odyssey
