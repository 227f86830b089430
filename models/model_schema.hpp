// The model's schema: every key of `model:` (in a scenario or a model preset), its `moe` keys
// included, with its type, default, help text, check and rendering, in one table beside ModelSpec.
#pragma once

#include <vector>

#include "models/input/schema.hpp"
#include "models/spec.hpp"

namespace odyssey {

/// Every model key, dotted inside the model ("moe.top_k"), in the order `odyssey validate
/// --schema` and `odyssey validate` print them. A `moe.*` key makes the model mixture-of-experts;
/// a dense model renders its `moe.*` keys empty.
const std::vector<Field<ModelSpec>>& model_fields();

} // namespace odyssey
