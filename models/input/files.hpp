// Writing the files users ask for (reports, traces, plots, baselines, sweep results, profiles).
#pragma once

#include <string>
#include <string_view>

namespace odyssey {

/// Writes `text` to `path` through a temporary file beside it and a rename, so that a reader never
/// sees half a file and a failure leaves the previous file as it was. Throws InputError at `path`
/// (with the system's reason) when it cannot be written.
void write_file_atomically(const std::string& path, std::string_view text);

/// Throws InputError at `path` when write_file_atomically(path, ...) could not write it for want of
/// its folder: the folder does not exist (the message says where it looked and how to create
/// it), is not a folder, or cannot be written in. For commands that work long before they write.
void check_writable(const std::string& path);

} // namespace odyssey
