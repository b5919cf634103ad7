// The job runners: what `tandem train` (and every rank a worker starts) runs
// for a resolved job spec (spec/job_spec.h), callable in process (the
// adaptation benchmark runs several of them). Each writes its output folder:
// weights, checkpoints, metrics and the rank events (jobs/rank_events.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <c10/core/Device.h>

#include "tandem/methods/models/reidentifier.h"
#include "tandem/spec/job_spec.h"
#include "tandem/v1/job_spec.pb.h"
#include "tandem/worker/data_parallel.h"

namespace tandem::jobs {

/// The one schema of a job (proto/tandem/v1/job_spec.proto); the runners
/// take it resolved (spec::resolve_job_spec: every field present).
using JobSpec = tandem::v1::JobSpec;

/// The re-ID model of spec.backbone (backbone_width, backbone_depth for
/// small) with a head of `classes` rows, initialised from torch's global
/// generator seeded with spec.seed: the model every re-ID job builds (and
/// the ranking service rebuilds from ranking.json, jobs/image_embedder.h).
methods::models::ReIdentifier make_model(const JobSpec& spec, int64_t classes);

/// The device this process trains spec's job on: spec.device resolved with
/// LOCAL_RANK (torchrun's variable, 0 when unset; worker/device.h), made the
/// current CUDA device, with cuDNN set up for spec.deterministic. Every job
/// below calls it first; `tandem train` calls it before any work, so that a
/// GPU the host lacks fails at once. Throws c10::Error naming spec.device.
c10::Device prepare_job_device(const JobSpec& spec);

/// Target metrics of a finished job, in percent: pretrain's last evaluation,
/// mmt's best (MMT's model selection).
struct JobResult {
  double map = 0;
  double rank1 = 0;
};

/// Runs (or resumes) a pretrain / mmt job: weights, events and checkpoints
/// in spec.output_dir as `tandem train` writes them. `quiet`: no progress.
/// With `parallel` (more than one rank; mmt needs two lanes) every rank
/// calls the job; rank 0 alone prints and writes the output folder.
JobResult pretrain_job(const JobSpec& spec, bool quiet,
                       const std::shared_ptr<const worker::DataParallel>& parallel = nullptr);
/// `clustering_service`: host:port of a `tandem cluster` that computes the
/// pseudo labels ("" = in this process).
JobResult mmt_job(const JobSpec& spec, bool quiet,
                  const std::shared_ptr<const worker::DataParallel>& parallel = nullptr,
                  const std::string& clustering_service = "");
/// Evaluates spec.weights on the target's query/gallery (metrics.json,
/// events.jsonl, the gallery export).
JobResult evaluate_job(const JobSpec& spec, bool quiet,
                       const std::shared_ptr<const worker::DataParallel>& parallel = nullptr);

/// The outcome of a classification job (source_only, self_ensemble, mcc, afn).
struct ClassificationJobResult {
  /// Accuracy (0..1) of the predicting network (Self-Ensemble: the EMA
  /// teacher) on the held-out target test set.
  double target_accuracy = 0;
  /// Self-Ensemble: the student's; the same as target_accuracy otherwise.
  double student_target_accuracy = 0;
  int64_t test_images = 0;
  int64_t num_classes = 0;
};

/// Runs (or resumes) a classification adaptation job (jobs/classification_job.cpp):
/// model.pt, checkpoint.pt, events.jsonl and metrics.json in spec.output_dir.
ClassificationJobResult classification_job(
    const JobSpec& spec, bool quiet,
    const std::shared_ptr<const worker::DataParallel>& parallel = nullptr);

/// MMT's rho (the defaults table's, chosen on Market-1501's 12,936 train
/// images) scaled to give the same neighbours per image on a target of
/// `train_images` images: rho is a share of all pairs (docs/training.md);
/// at most 0.5.
double rho_for_target(int64_t train_images);

/// Runs `spec` by its kind: classification_job, pretrain_job, evaluate_job
/// or mmt_job (with `clustering_service`).
void run_job(const JobSpec& spec, bool quiet,
             const std::shared_ptr<const worker::DataParallel>& parallel = nullptr,
             const std::string& clustering_service = "");

}  // namespace tandem::jobs
