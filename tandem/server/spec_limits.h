// Upper bounds on the size fields and strings of a submitted JobSpec: what
// the server accepts before any worker allocates for a job (issue 19).
//
// The lower bounds and the kinds' rules stay with the spec validation
// (spec/job_spec.h and jobs/spec_validation.h); these checks only refuse what no real job needs
// and what would exhaust a worker's memory or time: a 100000 × 100000 input,
// a billion epochs, a 1 GiB path.
#pragma once

#include <cstdint>
#include <vector>

#include <absl/status/status.h>

#include "tandem/v1/job_spec.pb.h"

namespace tandem::server {

/// One bound of spec_limits().
struct SpecLimit {
  /// What of the field is bounded.
  enum class Measure {
    kValue,    ///< an integer field's value (each value of a repeated one)
    kEntries,  ///< a repeated field's number of entries
    kBytes,    ///< a string field's length in bytes
  };
  /// The JobSpec field's path ("height", "target.images"), or the product
  /// "identities * instances" (the batch, checked when both are set).
  const char* field;
  Measure measure;
  /// Largest value accepted.
  int64_t max;
  /// Why this bound (one line, for docs/security.md).
  const char* reason;
};

/// Every bound, in the order check_spec_limits checks them: the one table
/// the checks and the docs read. Every integer and string field of JobSpec
/// and DatasetSpec has an entry (but `seed`, which any value is fine for).
const std::vector<SpecLimit>& spec_limits();

/// OK when every set field of `spec` is within spec_limits() and no string
/// holds a NUL byte; unset optional fields are fine. Otherwise
/// INVALID_ARGUMENT naming the first offending field, e.g. "spec.height:
/// 100000 is above the server's limit of 2048", "spec.target.root: 5000
/// bytes, above the server's limit of 4096", "spec.milestones[2]: ...".
absl::Status check_spec_limits(const tandem::v1::JobSpec& spec);

}  // namespace tandem::server
