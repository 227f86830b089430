// The machine's storage system and what a checkpoint costs on it. The storage is a SimGrid
// platform of its own: one host per GPU server of the job (its CPUs, with its storage NIC as a
// link) and the storage system as a host behind a link of the storage's aggregate bandwidth, so
// the servers' writes contend there as they do on a real file system. A checkpoint moves every
// GPU's shard GPU -> host memory over PCIe, then host -> storage as one flow per server.
#pragma once

#include <algorithm>
#include <string>

#include "models/data.hpp"
#include "models/reliability.hpp"
#include "models/units.hpp"
#include "topologies/machine.hpp"

namespace odyssey {

/// A checkpoint of a job as its machine writes and restores it. The state is spread evenly over
/// the job's GPUs, each saving its own shard (Megatron-LM's distributed checkpoint, PyTorch DCP):
/// the per-GPU figure of Llama 3's "1 MB-4 GB per GPU" (reference/reliability.yaml).
///
/// SYNC: every GPU copies its shard to host memory over PCIe and each server writes its GPUs'
/// shards to storage while training waits. ASYNC, two levels: training waits only for the copy to
/// the first level (host memory, or through it to the server's local NVMe); the copy then drains
/// to storage while training goes on. The next checkpoint needs the first level free: a drain
/// longer than the interval holds the next checkpoint's copy back by the difference (the backlog).
struct CheckpointPlan {
  bool modelled = false; ///< the machine has storage (machine.storage.bandwidth); else all zero
  CheckpointSpec policy;
  Bytes total;
  Bytes per_gpu;
  Bytes per_server;       ///< what one GPU server writes (its GPUs' shards)
  long servers = 0;       ///< GPU servers of the job: the storage's clients
  Seconds device_to_host; ///< GPU -> host memory over PCIe (every GPU at once)
  Seconds to_first_level; ///< what training waits for: the PCIe copy, or on to NVMe
  Seconds to_storage;     ///< sync: host -> storage; async: the drain; simulated, one flow per server
  Seconds from_storage;   ///< storage -> host on restore, simulated the same way
  Seconds host_to_device; ///< host -> GPU on restore
  BytesPerSecond client_bandwidth;  ///< per server: its storage NIC(s), or its fabric NICs
  BytesPerSecond storage_bandwidth; ///< the storage system's aggregate (machine.storage.bandwidth)
  BytesPerSecond write_rate;        ///< per server, the most its write (or drain) may use
  std::string write_limit;          ///< what sets write_rate (the storage's aggregate may bind below it)
  bool shares_fabric = false;       ///< the storage traffic rides the fabric NICs training uses
  [[nodiscard]] Seconds write() const { return to_first_level + to_storage; }
  [[nodiscard]] Seconds restore() const { return from_storage + host_to_device; }
  /// ASYNC: how far the drain overruns the interval (zero when it keeps up).
  [[nodiscard]] Seconds backlog() const {
    return policy.mode == CheckpointMode::ASYNC ? std::max(Seconds(0), to_storage - policy.interval)
                                                : Seconds(0);
  }
  /// Training stalled per checkpoint (checkpoint_stall's rule): the whole write when SYNC; when
  /// ASYNC the copy to the first level and any backlog.
  [[nodiscard]] Seconds stall(CheckpointMode mode) const {
    return checkpoint_stall(mode, write(), to_first_level + backlog());
  }
  /// Host memory of one server a checkpoint holds beyond training's own: an async checkpoint
  /// staged in host memory keeps its GPUs' state there until it is drained; a sync one streams it,
  /// an NVMe-staged one holds it on the NVMe.
  [[nodiscard]] Bytes host_memory(CheckpointMode mode) const {
    return mode == CheckpointMode::ASYNC && policy.first_level == CheckpointLevel::HOST_MEMORY ? per_server
                                                                                               : Bytes(0);
  }
  /// The storage bandwidth the whole write saw: total over the host -> storage time.
  [[nodiscard]] BytesPerSecond storage_rate() const {
    return to_storage.value() > 0 ? total / to_storage : BytesPerSecond(0);
  }
};

/// How the job writes its checkpoints, and what of the servers' fabric NICs training leaves.
struct CheckpointWriting {
  CheckpointSpec policy;
  /// Training's use of the busiest fabric NIC over the iteration (0-1), from the simulation. Where
  /// the storage traffic rides the fabric NICs (no storage.client_bandwidth), an async drain takes
  /// only what training leaves (ASSUMPTION: a background drain yields to training traffic, on
  /// average over the iteration; its bursts are not modelled). A sync write runs while training
  /// waits and takes the whole NICs.
  double fabric_nic_busy = 0.0;
  /// Bytes of the checkpoint already in host memory (ZeRO-Offload's states): they skip the
  /// GPU -> host copy (and the copy back on restore).
  Bytes in_host_memory = Bytes(0);
};

/// Time for every GPU of a server to copy `per_gpu` bytes to host memory (or back) over PCIe:
/// each GPU's link (server.pcie_bandwidth), shared by the GPUs under one PCIe switch where the
/// machine has them (the switch's uplink to the CPU is taken as fast as a GPU's link:
/// ASSUMPTION, as DGX-1 and DGX A100 use x16 uplinks). Zero without a PCIe bandwidth.
Seconds host_copy_time(const ServerSpec& server, Bytes per_gpu);

/// Throws InputError at "storage.capacity" (a machine key, positionless as check_machine's) when a
/// checkpoint of `size` bytes does not fit the storage.
void check_checkpoint_fits(const StorageSpec& storage, Bytes size);

/// Bytes of a `size` checkpoint of a job of `gpus` GPUs that one full server of `machine` writes.
Bytes checkpoint_per_server(const MachineSpec& machine, Bytes size, long gpus);

/// Throws InputError at "checkpoint.first_level" (positionless) when an async checkpoint staged on
/// local NVMe does not fit a server's NVMe.
void check_checkpoint_first_level(const MachineSpec& machine, const CheckpointSpec& policy, Bytes size,
                                  long gpus);

/// The checkpoint of `size` bytes of a job of `gpus` GPUs on `machine`, written as `how` says: the
/// one function every command (run, sweep, plan, the validation) asks what a checkpoint costs. The
/// storage part is simulated (a forked SimGrid run, sim::run_isolated). Without storage on the
/// machine, an unmodelled plan (every time zero). Throws as check_checkpoint_fits, and at
/// "checkpoint.first_level" (positionless) when a server's shards do not fit its NVMe.
CheckpointPlan plan_checkpoint(const MachineSpec& machine, Bytes size, long gpus,
                               const CheckpointWriting& how = {});

/// The job as its data loader sees it.
struct DataJob {
  long gpus = 0;
  int pp = 1;
  int seq_len = 0;
  long global_batch = 0; ///< sequences per iteration
  long vocab = 0;
};

/// The input pipeline of one iteration, in closed form: each loader (a GPU server holding first
/// pipeline stage GPUs, as Megatron-LM loads data on the first stage, or a CPU host with a data
/// service) reads its samples from storage, prepares them on its worker cores, and the GPU servers
/// copy them to their GPUs over PCIe (with a data service, after receiving them over the fabric).
/// The stages are pipelined (the loader prefetches), so the slowest one sets the loader's time per
/// iteration; training stalls by what that exceeds the iteration.
struct DataLoading {
  DataSpec spec;
  long loaders = 0;       ///< loading GPU servers, or CPU hosts with a data service
  long gpu_servers = 0;   ///< GPU servers that receive the samples (first pipeline stage)
  double samples = 0;     ///< per loader per iteration
  Bytes sample_bytes;     ///< stored bytes of one sample (seq_len + 1 tokens)
  Seconds cpu_per_sample; ///< on one worker core
  Seconds iteration;      ///< training's iteration, without a data stall
  Seconds storage;        ///< reading a loader's samples (zero: no storage, a local cache)
  Seconds cpu;            ///< preparing them on the workers
  Seconds network;        ///< data service: the samples over the fabric to a GPU server
  Seconds pcie;           ///< host -> GPU copies of a GPU server's samples
  [[nodiscard]] Seconds loader() const;
  [[nodiscard]] Seconds stall() const;
  /// Iteration over the loader's time (above 1: it keeps up).
  [[nodiscard]] double headroom() const;
  /// "storage", "cpu", "network" or "pcie": the stage that sets the loader's time.
  [[nodiscard]] std::string bottleneck() const;
};

/// The input pipeline of `job` on `machine` under `spec` for an iteration of `iteration`: the one
/// function the report and every command use. Stored token ids move as `data_bytes_per_token`
/// says; samples reach the GPUs as int64 tokens and labels (16 bytes a token, Megatron-LM's
/// batch; the masks are built on the GPU).
DataLoading plan_data_loading(const MachineSpec& machine, const DataSpec& spec, const DataJob& job,
                              Seconds iteration);

} // namespace odyssey
