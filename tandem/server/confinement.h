// Where a submitted job may write and read (issue 19, docs/security.md).
//
// The server runs jobs for whoever holds a submit token; the paths in their
// specs are confined so that a job writes only under the server's
// --jobs-dir and reads data and weights only under its --data-root folders.
// Paths are resolved (symlinks followed, `..` removed) before they are
// compared, and an outside path is refused with the same message whether or
// not it exists, so a spec cannot probe the file system.
#pragma once

#include <string>
#include <vector>

#include <absl/status/status.h>

#include "tandem/v1/job_spec.pb.h"

namespace tandem::server {

/// Rewrites spec.output_dir to its resolved absolute path under `jobs_dir`
/// (a relative one is taken relative to it; empty: jobs_dir/job-`job_id`).
/// INVALID_ARGUMENT naming spec.output_dir and --jobs-dir when it resolves
/// outside, or to jobs_dir itself.
absl::Status confine_output_dir(tandem::v1::JobSpec& spec, const std::string& jobs_dir,
                                const std::string& job_id);

/// Rewrites every data path of the spec (source/target root, list,
/// test_list; init, init_1, init_2, weights) to its resolved absolute path
/// and checks that it lies under one of `data_roots` (a relative path is
/// taken relative to the first root); weight files (init, init_1, init_2,
/// weights) may also lie under one of `weight_roots` (the jobs folder, where
/// earlier jobs wrote them). INVALID_ARGUMENT naming the field and
/// --data-root otherwise, and for any data path when `data_roots` is empty.
absl::Status confine_data_paths(tandem::v1::JobSpec& spec,
                                const std::vector<std::string>& data_roots,
                                const std::vector<std::string>& weight_roots = {});

/// `path` resolved (std::filesystem::weakly_canonical of its absolute form).
std::string resolve_path(const std::string& path);
/// True when `path` is `root` or below it, both compared as given (no
/// file-system calls: for paths already resolved).
bool is_within_lexically(const std::string& path, const std::string& root);
/// True when `path` is `root` or below it, both resolved first.
bool is_within(const std::string& path, const std::string& root);
/// True when `path` is below `root` and not `root` itself, both resolved.
bool is_strictly_within(const std::string& path, const std::string& root);

}  // namespace tandem::server
