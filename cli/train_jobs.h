// The training jobs of `tandem train`, callable in process (the adaptation
// benchmark runs several of them).
#pragma once

#include "tandem/cli/job_spec.h"

namespace tandem::cli {

/// Target metrics of a finished job, in percent: pretrain's last evaluation,
/// mmt's best (MMT's model selection).
struct JobResult {
  double map = 0;
  double rank1 = 0;
};

/// Runs (or resumes) a pretrain / mmt job: weights, events and checkpoints
/// in spec.output_dir as `tandem train` writes them. `quiet`: no progress.
JobResult pretrain_job(const JobSpec& spec, bool quiet);
JobResult mmt_job(const JobSpec& spec, bool quiet);
/// Evaluates spec.weights on the target's query/gallery (metrics.json,
/// events.jsonl, the gallery export).
JobResult evaluate_job(const JobSpec& spec, bool quiet);

}  // namespace tandem::cli
