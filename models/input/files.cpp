#include "models/input/files.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <fmt/format.h>
#include <unistd.h>

#include "models/input/diagnostics.hpp"

namespace odyssey {

void write_file_atomically(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError({.file = path}, "", std::string("cannot write file: ") + std::strerror(errno));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out.flush()) {
      const std::string why = std::strerror(errno);
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw InputError({.file = path}, "", "cannot write file: " + why);
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw InputError({.file = path}, "", "cannot write file: " + ec.message());
  }
}

void check_writable(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path folder = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  std::error_code ec;
  const fs::file_status status = fs::status(folder, ec);
  if (!fs::exists(status)) {
    const std::string where = folder.is_relative()
                                  ? fmt::format(" in the working directory {}", fs::current_path(ec).string())
                                  : "";
    throw InputError(
        {.file = path}, "",
        fmt::format("cannot write the file: folder '{}' does not exist{} (create it first: mkdir -p {})",
                    folder.string(), where, folder.string()));
  }
  if (!fs::is_directory(status))
    throw InputError({.file = path}, "",
                     fmt::format("cannot write the file: '{}' is not a folder", folder.string()));
  if (::access(folder.c_str(), W_OK) != 0)
    throw InputError({.file = path}, "",
                     fmt::format("cannot write the file: no permission to write in folder '{}': {}",
                                 folder.string(), std::strerror(errno)));
  if (fs::is_directory(path, ec))
    throw InputError({.file = path}, "", "cannot write the file: it is a folder");
}

} // namespace odyssey
