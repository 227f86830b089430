// Host CPU profiles (calibration/profiles/host/*.yaml): CPU-Adam throughput measured by
// kernels/cpu_adam.cpp, with provenance. Kept apart from the GPU profiles, which find_profile
// chooses among by GPU; a run reads this one only when it offloads the optimizer.
#pragma once

#include <string>

#include "models/offload.hpp"

namespace odyssey {

/// The CPU-Adam rate a host profile gives: of its newest `measured` entry, the one-thread run's
/// parameters per second (one core, not limited by memory bandwidth on the measuring machine) and
/// the bytes the step moves per parameter. Throws InputError at the offending key.
CpuAdamRate load_cpu_adam_profile(const std::string& path);

} // namespace odyssey
