// The machine's schema: every key of `machine:` (in a scenario, a machine preset or a machine
// file) with its type, default, help text, check and rendering, in one table beside MachineSpec.
#pragma once

#include <vector>

#include "models/input/schema.hpp"
#include "topologies/machine.hpp"

namespace odyssey {

/// Every machine key, dotted inside the machine ("fabric.servers_per_leaf"), in the order
/// `odyssey validate --schema` and `odyssey validate` print them.
const std::vector<Field<MachineSpec>>& machine_fields();

} // namespace odyssey
