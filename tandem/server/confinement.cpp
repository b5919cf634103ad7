#include "tandem/server/confinement.h"

#include <filesystem>
#include <system_error>

namespace tandem::server {
namespace {

namespace fs = std::filesystem;
namespace v1 = tandem::v1;

absl::Status invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError("spec." + field + ": " + what);
}

std::string join_roots(const std::vector<std::string>& roots) {
  std::string text;
  for (const auto& root : roots) text += (text.empty() ? "" : ", ") + root;
  return text;
}

/// One data path: resolved in place, or the error naming the field.
absl::Status confine_one(const std::string& field, std::string* path,
                         const std::vector<std::string>& roots) {
  if (path->empty()) return absl::OkStatus();
  if (roots.empty()) {
    return invalid(field,
                   "this server allows no data folders (start `tandem server` with "
                   "--data-root DIR for each folder jobs may read)");
  }
  const fs::path given(*path);
  const std::string resolved =
      resolve_path(given.is_absolute() ? *path : (fs::path(roots.front()) / given).string());
  for (const auto& root : roots) {
    if (is_within_lexically(resolved, root)) {
      *path = resolved;
      return absl::OkStatus();
    }
  }
  return invalid(
      field, *path + " is outside the server's --data-root folders (" + join_roots(roots) + ")");
}

}  // namespace

namespace {

/// `path` with every symbolic link followed, component by component, also a
/// dangling one (weakly_canonical leaves those unresolved, which would let a
/// link inside a root name a file outside it). `..` applies to the resolved
/// folder, as the kernel does. Gives up following after 40 links (a loop).
fs::path follow_links(const fs::path& path, int& hops) {
  std::error_code error;
  const fs::path absolute = fs::absolute(path, error);
  fs::path out = absolute.root_path();
  for (auto it = absolute.begin(); it != absolute.end(); ++it) {
    const fs::path& part = *it;
    if (part == absolute.root_path() || part.empty() || part == ".") continue;
    if (part == "..") {
      out = out.parent_path();
      continue;
    }
    const fs::path next = out / part;
    if (hops < 40 && fs::is_symlink(fs::symlink_status(next, error))) {
      ++hops;
      const fs::path target = fs::read_symlink(next, error);
      if (!error) {
        fs::path rest;
        for (auto r = std::next(it); r != absolute.end(); ++r) rest /= *r;
        const fs::path joined = target.is_absolute() ? target : out / target;
        return follow_links(rest.empty() ? joined : joined / rest, hops);
      }
    }
    out = next;
  }
  return out;
}

}  // namespace

std::string resolve_path(const std::string& path) {
  int hops = 0;
  std::string text = follow_links(fs::path(path), hops).lexically_normal().string();
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  return text;
}

bool is_within_lexically(const std::string& path, const std::string& root) {
  const fs::path relative = fs::path(path).lexically_relative(root);
  return !relative.empty() && *relative.begin() != "..";
}

bool is_within(const std::string& path, const std::string& root) {
  return is_within_lexically(resolve_path(path), resolve_path(root));
}

bool is_strictly_within(const std::string& path, const std::string& root) {
  const std::string resolved = resolve_path(path), resolved_root = resolve_path(root);
  return resolved != resolved_root && is_within_lexically(resolved, resolved_root);
}

absl::Status confine_output_dir(v1::JobSpec& spec, const std::string& jobs_dir,
                                const std::string& job_id) {
  const std::string root = resolve_path(jobs_dir);
  const std::string given = spec.output_dir();
  const fs::path wanted = given.empty()                   ? fs::path(root) / ("job-" + job_id)
                          : fs::path(given).is_absolute() ? fs::path(given)
                                                          : fs::path(root) / given;
  const std::string resolved = resolve_path(wanted.string());
  if (!is_strictly_within(resolved, root)) {
    return invalid("output_dir", given + " is outside the server's --jobs-dir " + root +
                                     " (give a folder name relative to it, or leave it out)");
  }
  spec.set_output_dir(resolved);
  return absl::OkStatus();
}

absl::Status confine_data_paths(v1::JobSpec& spec, const std::vector<std::string>& data_roots,
                                const std::vector<std::string>& weight_roots) {
  std::vector<std::string> roots, weight_or_data_roots;
  for (const auto& root : data_roots) roots.push_back(resolve_path(root));
  weight_or_data_roots = roots;
  for (const auto& root : weight_roots) weight_or_data_roots.push_back(resolve_path(root));
  for (const auto& [name, present] :
       {std::pair<const char*, bool>{"source", spec.has_source()}, {"target", spec.has_target()}}) {
    if (!present) continue;  // no empty message appears where none was
    v1::DatasetSpec* data =
        std::string(name) == "source" ? spec.mutable_source() : spec.mutable_target();
    const std::string prefix = std::string(name) + ".";
    if (auto s = confine_one(prefix + "root", data->mutable_root(), roots); !s.ok()) return s;
    if (auto s = confine_one(prefix + "list", data->mutable_list(), roots); !s.ok()) return s;
    if (auto s = confine_one(prefix + "test_list", data->mutable_test_list(), roots); !s.ok())
      return s;
  }
  for (const auto& [name, path] :
       {std::pair<const char*, std::string*>{"init", spec.mutable_init()},
        {"init_1", spec.mutable_init_1()},
        {"init_2", spec.mutable_init_2()},
        {"weights", spec.mutable_weights()}}) {
    if (auto s = confine_one(name, path, weight_or_data_roots); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace tandem::server
