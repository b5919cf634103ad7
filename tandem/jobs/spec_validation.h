// What `tandem server` checks before it accepts a job (SubmitJob): the spec
// as `tandem train` will read it, plus what only the data can tell (a data
// set that does not exist, k-means K or P identities larger than the data
// set, weight files that are missing).
#pragma once

#include <absl/status/status.h>

#include "tandem/v1/job_spec.pb.h"

namespace tandem::jobs {

/// OK, or INVALID_ARGUMENT with a message naming the field
/// ("spec.target.root: /x does not exist").
absl::Status validate_submitted_spec(const tandem::v1::JobSpec& spec);

}  // namespace tandem::jobs
