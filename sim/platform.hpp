// The SimGrid platform of a machine. Internal to sim/: the only header outside sim/*.cpp that
// names SimGrid types.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <simgrid/s4u.hpp>

#include "topologies/machine.hpp"

namespace odyssey::sim {

class FabricZone;
struct Flow;

/// Link classes of the platform; the engine asks which class a route's bottleneck belongs to.
enum class LinkRole { NVLINK, NIC, LEAF_TRUNK, POD_TRUNK, PCIE, LOCAL, GLOBAL, TORUS };
const char* to_string(LinkRole role);

/// A link of the fabric with what it is, for the most-loaded-links report.
struct FabricLink {
  simgrid::s4u::Link* link = nullptr;
  LinkRole role = LinkRole::NIC;
  /// The share of the link's capacity and traffic that SimGrid sees: below 1 on links every
  /// folded tensor position shares (Platform::fold_positions). Capacity and usage in SimGrid
  /// divided by it are the link's own.
  double simulated_share = 1.0;
};

/// SimGrid's timing accuracy (its `precision/timing`, 1e-9 s): a wait shorter than it is no wait.
inline constexpr double TIMING_ACCURACY = 1e-9;

/// The latency of a route: the sum of its links' latencies (NVLink, NIC, switch hops).
[[nodiscard]] Seconds latency_of(const std::vector<simgrid::s4u::Link*>& route);

/// Flows started on the network (Platform::start_flow) with the latency of each one's route, which
/// Odyssey adds after SimGrid finishes moving its bytes (make_engine: SimGrid itself sees no
/// latency, so that flows share links equally).
struct FlowsInFlight {
  std::vector<simgrid::s4u::CommPtr> comms;
  std::vector<double> route_latency; ///< seconds, one per comm

  [[nodiscard]] bool empty() const { return comms.empty(); }
  void add(simgrid::s4u::CommPtr comm, Seconds latency);
};

/// Waits until every flow of `flows` has moved its bytes and returns how much later the last of
/// them lands (its finish plus its route's latency, after now; zero when that has passed). The
/// caller sleeps that long, with any latency of its own. `moved`, when given, receives the
/// simulated time the last bytes left SimGrid (the latest finish). Clears `flows`.
[[nodiscard]] Seconds wait_bytes(FlowsInFlight& flows, double* moved = nullptr);

/// Builds every GPU of the machine as a SimGrid host inside one custom routing zone whose routes
/// are computed arithmetically (GPU port -> NIC -> leaf trunk -> pod trunk -> ... -> GPU port),
/// so no route table grows with N^2 and hosts sit one level below the root (SimGrid 3.32 routes
/// zones nested three deep wrongly, issue #389). CPU-only servers are hosts of a sibling zone.
class Platform {
public:
  /// Must be called after the s4u::Engine exists and before it runs.
  explicit Platform(const MachineSpec& machine);

  [[nodiscard]] simgrid::s4u::Host* gpu(long index) const { return gpus_.at(static_cast<size_t>(index)); }
  [[nodiscard]] long gpu_count() const { return static_cast<long>(gpus_.size()); }
  [[nodiscard]] long cpu_host_count() const { return cpu_hosts_; }
  [[nodiscard]] long server_of(long gpu_index) const { return gpu_index / gpus_per_server_; }
  [[nodiscard]] const std::vector<FabricLink>& links() const { return links_; }
  /// Starts `flow` on the network: the one place a flow's size goes into SimGrid, as a whole
  /// number of bytes and at least one.
  [[nodiscard]] simgrid::s4u::CommPtr start_flow(const Flow& flow) const;
  /// Leaves out of SimGrid's sharing problem the trunk and PCIe links that the traffic of the
  /// job's GPUs cannot saturate (FabricZone::leave_out_unsaturable); call before any flow starts.
  /// Returns how many links were left out.
  long leave_out_unsaturable(const std::vector<long>& job_gpus);
  /// Whether moving every GPU of a block by one NIC's worth of GPUs maps the job's flows between
  /// servers and the links of the sharing problem onto themselves (FabricZone::rails_independent),
  /// so that only the flows of the block's first NIC position need to move (the engine's fold of
  /// tensor positions, `positions` of them per block). If so, the links every position shares
  /// keep 1/positions of their capacity in SimGrid (each carries one flow of every orbit of
  /// `positions` alike flows: max-min gives it the orbit's share) and true. Call after
  /// leave_out_unsaturable, before any flow starts.
  bool fold_positions(int positions);
  /// Whether the route from GPU `src` to GPU `dst` crosses a link between switches that is in the
  /// sharing problem (not left out by leave_out_unsaturable): if not, the flow shares only its
  /// endpoints' own PCIe, NIC and NVLink links.
  [[nodiscard]] bool crosses_shared_fabric(long src, long dst) const;
  /// Every link from GPU `src` to GPU `dst`, those left out of the sharing problem included.
  void route(long src, long dst, std::vector<simgrid::s4u::Link*>& links) const;
  /// The latency of that route (latency_of).
  [[nodiscard]] Seconds route_latency(long src, long dst) const;

private:
  FabricZone* fabric_ = nullptr; ///< owned by SimGrid
  std::vector<simgrid::s4u::Host*> gpus_;
  std::vector<FabricLink> links_;
  long cpu_hosts_ = 0;
  int gpus_per_server_ = 1;
};

/// The process's SimGrid engine, configured the way every Odyssey simulation needs it: CM02
/// without cross-traffic (the default LV08 is tuned for TCP and distorts GPU traffic:
/// ../shared/reference/simgrid-3.32-notes.md, "Network model"), no stack guard pages (tens of
/// thousands of actors), SimGrid's configuration chatter off. `args` are extra SimGrid flags
/// (`--log=...`, `--cfg=...`), applied after those defaults.
std::unique_ptr<simgrid::s4u::Engine> make_engine(const std::vector<std::string>& args);

/// Speed given to GPU hosts; compute activities carry `seconds x GPU_HOST_SPEED` flops so that
/// their simulated duration is exactly the cost model's duration.
inline constexpr double GPU_HOST_SPEED = 1e12;

} // namespace odyssey::sim
