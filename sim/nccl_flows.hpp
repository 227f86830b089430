// The flows NCCL's algorithms put on the network, one per algorithm edge with the bytes of all
// its steps aggregated. Internal to sim/: shared by the engine and the collective command.
#pragma once

#include <vector>

#include "calibration/cost_model.hpp"
#include "models/units.hpp"
#include "topologies/machine.hpp"

namespace odyssey::sim {

/// One flow on the simulated network: GPU `src` sends `bytes` to GPU `dst` (global GPU indices).
struct Flow {
  long src = 0;
  long dst = 0;
  Bytes bytes;
  /// Where the flow moves in SimGrid when it stands in for src -> dst with the same load on both
  /// GPUs' NICs (tree_edges_as_rings); -1: dst. Its bytes still count on the route to dst.
  long sim_dst = -1;
};

/// What a ring carries: `edge_factor` x `size` on each ring edge in all, the bytes inflated by
/// the protocol's efficiency on NVLink and on the network.
struct RingSpec {
  Bytes size;
  double edge_factor = 1.0;
  double efficiency_nvlink = 1.0;
  double efficiency_net = 1.0;
};

/// What a double binary tree carries: `size` in all, half per tree, the bytes inflated by the
/// protocol's efficiency on the network (the only links its flows use).
struct TreeSpec {
  Bytes size;
  double efficiency_net = 1.0;
};

/// The rings NCCL runs over `members` (global GPU indices in rank order), with each ring edge's
/// bytes aggregated into one flow: members in one server are chained over NVLink and servers are
/// joined through NICs; with k members per server and enough NICs, min(k, nics) rings (channels)
/// carry 1/channels of the data each, every one leaving a server through a different GPU (hence
/// NIC). On a hybrid cube-mesh (`intra` NVLINK_MESH, 8 GPUs) each channel runs as four rings along
/// the mesh's NVLink cycles, so that every NVLink carries its share.
std::vector<Flow> nccl_rings(const std::vector<long>& members, const ServerSpec& server,
                             const RingSpec& ring);

/// NCCL's double binary tree all-reduce over `members`, across servers: two complementary binary
/// trees (heap order and its mirror, so a server that is interior in one is a leaf in the other)
/// between the GPUs that carry each channel's network traffic, each tree moving half of the data
/// up (reduce) and down (broadcast); min(k, nics) channels as for rings. The chain inside each
/// server is nccl_tree_chains': the tree's own flows are between the servers' head GPUs only, all of
/// the same size (flows that finish together cost SimGrid one solve; staggered ones are what make
/// it slow).
std::vector<Flow> nccl_trees(const std::vector<long>& members, const ServerSpec& server,
                             const TreeSpec& tree);

/// The chains of NCCL's tree inside each server (the GPUs of a server in a line, the channel's head
/// at the top): every GPU sends the buffer up the chain (reduce) and down it (broadcast), so each
/// GPU's NVLink port carries 2 x `size` x (k-1)/k each way over the channels, k the server's
/// members. One flow from each member to the next of its server loads every port with exactly
/// that (as nvls_flows does for the switch); with two servers the chain, not the network, is what
/// bounds the tree on NVLink servers.
/// Moves the flows between servers of a tree (nccl_trees) onto rings with the same load on every
/// NIC: per size of flow and position in the server, ring k joins the GPUs that send at least k
/// such flows (in server order), and each GPU's k-th flow goes to its successor on ring k
/// (`sim_dst`). Every GPU keeps its number of flows of each size in and out, so where the fabric
/// between servers is out of SimGrid's sharing problem (Platform::fabric_out_of_sharing) every link
/// that is in it carries the same flows. The flows of a tree share their endpoints' NICs and chain
/// every server of the group into one sharing problem, re-solved at each event; ring flows touch
/// only their own two NICs. What can differ is the route latency by which CM02 weighs a flow's
/// share against other traffic on a NIC (a tree edge and its stand-in cross different switches).
/// Returns false, changing nothing, where a GPU's flows in and out differ in number or a ring
/// would have one GPU.
bool tree_edges_as_rings(std::vector<Flow>& flows, int gpus_per_server);

std::vector<Flow> nccl_tree_chains(const std::vector<long>& members, const ServerSpec& server, Bytes size,
                                   double efficiency_nvlink);

/// The flows of `plan` (the algorithm NCCL's tuning chose) for a collective of `size` over
/// `members`: rings, double binary trees, NVLS (each GPU to the NVSwitch and back, modelled as
/// a flow to its neighbour that loads its port both ways), in-network reduction (each channel's
/// head GPU sends its share once to the switches and gets the result back: a ring over the
/// servers that loads every NIC and trunk once per direction), PAT (distance-doubling exchanges),
/// and every pair for all-to-all. O(members) flows except all-to-all (O(members^2)) and PAT
/// (O(members log members)).
std::vector<Flow> nccl_flows(const CollectivePlan& plan, CollectiveKind kind,
                             const std::vector<long>& members, const MachineSpec& machine, Bytes size);

} // namespace odyssey::sim
