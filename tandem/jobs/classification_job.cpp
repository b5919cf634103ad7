// The classification adaptation jobs of `tandem train`: source_only,
// self_ensemble, mcc and afn (worker/train/classification_trainer.h) on an
// ImageList pair (TLlib's image_list files) or the built-in Fashion-MNIST
// source → target shift (docs/fashion_mnist.md).
//
// Per epoch: `iters` steps (one source and one target batch each), one JSON
// event per step and one per epoch in OUTPUT_DIR/events.jsonl, a progress bar
// on a terminal or plain lines otherwise, the accuracy of the predicting
// network (Self-Ensemble: the EMA teacher) on the held-out target test set
// when evaluated, and two files written atomically: model.pt (the predicting
// network's state dict) and checkpoint.pt (the trainer's full state, with
// the RNG). Running the same spec on the same output_dir resumes after the
// last finished epoch and finishes bit-identical to an uninterrupted run
// (fixed seed and thread count). At the end: metrics.json and a "result"
// event with the final held-out target accuracy.
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tandem/jobs/job_progress.h"
#include "tandem/jobs/train_jobs.h"
#include "tandem/methods/atomic_file.h"
#include "tandem/methods/models/weights.h"
#include "tandem/methods/serialization.h"
#include "tandem/spec/job_spec.h"
#include "tandem/worker/data/fashion_mnist.h"
#include "tandem/worker/data/image.h"
#include "tandem/worker/data/reid_dataset.h"
#include "tandem/worker/data/transforms.h"
#include "tandem/worker/train/checkpoint.h"
#include "tandem/worker/train/classification_trainer.h"

namespace tandem::jobs {
namespace {
namespace fs = std::filesystem;
using worker::ClassificationMethod;

/// The checkpoint's meta.kind of each method (pretrain 0, mmt 1).
double kind_code(ClassificationMethod method) {
  return 10.0 + static_cast<double>(static_cast<int>(method));
}

/// Labelled images as the trainer takes them: uint8 (n, H, W, 3), int64 (n).
struct Images {
  torch::Tensor images, labels;
  int64_t skipped = 0;
};

/// Reads an ImageList file: every image decoded and resized to height ×
/// width (PIL's bicubic); an image that cannot be read is skipped and counted.
Images read_image_list(const std::string& list, const std::string& root, const JobSpec& spec,
                       const std::string& field) {
  const std::vector<worker::LabeledImage> entries = worker::load_image_list(list, root);
  Images out;
  std::vector<int64_t> labels;
  std::vector<uint8_t> pixels;
  const auto size = static_cast<size_t>(spec.height() * spec.width() * 3);
  for (const auto& entry : entries) {
    worker::Image image;
    try {
      image = worker::read_image(entry.path);
    } catch (const worker::ImageError& e) {
      ++out.skipped;
      if (out.skipped <= 3) std::cerr << "tandem train: skipped " << e.what() << std::endl;
      continue;
    }
    if (image.height != spec.height() || image.width != spec.width()) {
      image = worker::resize_bicubic(image, spec.height(), spec.width());
    }
    pixels.insert(pixels.end(), image.pixels.begin(), image.pixels.begin() + size);
    labels.push_back(entry.label);
  }
  const auto n = static_cast<int64_t>(labels.size());
  if (n == 0) {
    throw std::invalid_argument("spec." + field + ": " + list + " has no readable image");
  }
  out.images =
      torch::from_blob(pixels.data(), {n, spec.height(), spec.width(), 3}, torch::kUInt8).clone();
  out.labels = torch::tensor(labels, torch::kInt64);
  return out;
}

/// Fashion-MNIST images at the spec's size (32 × 32 as rendered; resized otherwise).
torch::Tensor at_size(const torch::Tensor& images, const JobSpec& spec) {
  if (images.size(1) == spec.height() && images.size(2) == spec.width()) return images;
  const auto list = worker::fashion_images_to_list(images);
  torch::Tensor out = torch::empty({images.size(0), spec.height(), spec.width(), 3}, torch::kUInt8);
  for (size_t i = 0; i < list.size(); ++i) {
    const worker::Image resized = worker::resize_bicubic(list[i], spec.height(), spec.width());
    std::memcpy(out[static_cast<int64_t>(i)].data_ptr<uint8_t>(), resized.pixels.data(),
                resized.pixels.size());
  }
  return out;
}

struct Data {
  Images source, target_train, target_test;
  int64_t num_classes = 0;
  std::string description;
};

Data load_data(const JobSpec& spec) {
  Data data;
  std::ostringstream what;
  const auto fashion_dir = [](const tandem::v1::DatasetSpec& d) {
    return d.root().empty() ? std::string(worker::kFashionMnistDefaultDir) : d.root();
  };
  if (spec.source().kind() == "fashion_mnist_source") {
    const auto source =
        worker::load_fashion_source(fashion_dir(spec.source()), spec.source().images());
    data.source.images = at_size(source.source, spec);
    data.source.labels = source.source_labels;
    what << "Fashion-MNIST source (" << spec.source().images() << " images)";
  } else {
    data.source = read_image_list(spec.source().list(), spec.source().root(), spec, "source.list");
    what << spec.source().list() << " (" << data.source.labels.size(0) << " images)";
  }
  if (spec.target().kind() == "fashion_mnist_target") {
    const auto target = worker::load_fashion_target(
        fashion_dir(spec.target()), spec.target().images(), spec.target().test_images(),
        worker::fashion_target_shift(spec.target().shift()));
    data.target_train.images = at_size(target.target_train, spec);
    data.target_train.labels = target.target_train_labels;  // never used for training
    data.target_test.images = at_size(target.target_test, spec);
    data.target_test.labels = target.target_test_labels;
    what << " -> Fashion-MNIST " << spec.target().shift() << " target (" << spec.target().images()
         << " unlabelled, " << spec.target().test_images() << " held-out test images)";
  } else {
    data.target_train =
        read_image_list(spec.target().list(), spec.target().root(), spec, "target.list");
    data.target_test =
        read_image_list(spec.target().test_list(), spec.target().root(), spec, "target.test_list");
    what << " -> " << spec.target().list() << " (" << data.target_train.labels.size(0)
         << " unlabelled), held-out " << spec.target().test_list() << " ("
         << data.target_test.labels.size(0) << " images)";
  }
  const int64_t skipped =
      data.source.skipped + data.target_train.skipped + data.target_test.skipped;
  if (skipped > 0) what << ", " << skipped << " unreadable images skipped";
  data.num_classes = data.source.labels.max().item<int64_t>() + 1;
  if (spec.source().kind() == "fashion_mnist_source")
    data.num_classes = worker::kFashionMnistClasses;
  if (data.num_classes < 2) {
    throw std::invalid_argument("spec.source: the source has a single class (" +
                                std::to_string(data.num_classes) + "); two or more are needed");
  }
  const int64_t test_max = data.target_test.labels.max().item<int64_t>();
  if (test_max >= data.num_classes) {
    throw std::invalid_argument(
        std::string("spec.target.") +
        (spec.target().kind() == "image_list" ? "test_list" : "test_images") + ": label " +
        std::to_string(test_max) + " is not a source class (0.." +
        std::to_string(data.num_classes - 1) + ")");
  }
  if (data.source.labels.size(0) < spec.batch_size() ||
      data.target_train.labels.size(0) < spec.batch_size()) {
    throw std::invalid_argument("spec.batch_size (" + std::to_string(spec.batch_size()) +
                                ") exceeds the " + std::to_string(data.source.labels.size(0)) +
                                " source or " + std::to_string(data.target_train.labels.size(0)) +
                                " target train images");
  }
  data.description = what.str();
  return data;
}

worker::ClassificationOptions options_of(const JobSpec& spec) {
  worker::ClassificationOptions o;
  o.iterations = spec.epochs() * spec.iters();
  o.batch_size = spec.batch_size();
  o.lr = spec.lr();
  o.momentum = spec.momentum();
  o.weight_decay = spec.weight_decay();
  o.lr_gamma = spec.lr_gamma();
  o.lr_decay = spec.lr_decay();
  o.seed = spec.seed();
  o.backbone_width = spec.backbone_width();
  o.bottleneck_dim = spec.bottleneck_dim();
  o.augment_shift = spec.augment_shift();
  o.augment_flip_probability = spec.augment_flip_probability();
  o.augment_color_jitter = spec.augment_color_jitter();
  o.augment_invert_probability = spec.augment_invert_probability();
  o.unsupervised_warmup_iterations = spec.unsupervised_warmup_iterations();
  o.self_ensemble_alpha = spec.self_ensemble_alpha();
  o.self_ensemble_confidence_threshold = spec.self_ensemble_confidence_threshold();
  o.self_ensemble_consistency_weight = spec.self_ensemble_consistency_weight();
  o.self_ensemble_balance_weight = spec.self_ensemble_balance_weight();
  o.mcc_temperature = spec.mcc_temperature();
  o.mcc_trade_off = spec.mcc_trade_off();
  o.afn_delta = spec.afn_delta();
  o.afn_trade_off = spec.afn_trade_off();
  o.afn_dropout = spec.afn_dropout();
  return o;
}

/// The predicting network: Self-Ensemble's teacher, the classifier otherwise.
torch::nn::Module& predicting_network(worker::ClassificationTrainer& trainer) {
  if (auto* teacher = trainer.teacher()) return *teacher->module();
  return *trainer.classifier();
}

void write_json(const fs::path& path, const nlohmann::ordered_json& value) {
  methods::write_file_atomically(path.string(), value.dump(2) + "\n");
}

}  // namespace

ClassificationJobResult classification_job(
    const JobSpec& spec, bool quiet, const std::shared_ptr<const worker::DataParallel>& parallel) {
  const ClassificationMethod method = worker::parse_classification_method(spec.kind());
  const c10::Device device = prepare_job_device(spec);
  fs::create_directories(spec.output_dir());
  const fs::path out_dir(spec.output_dir());
  // Rank 0 prints and writes the output folder; the others train along.
  const bool leader = !parallel || parallel->rank() == 0;
  quiet = quiet || !leader;
  std::ostream null_stream(nullptr);
  std::ostream& log = leader ? std::cout : null_stream;
  const Data data = load_data(spec);
  worker::ClassificationOptions options = options_of(spec);
  options.bn_group_size = spec.bn_group_size();
  options.data_parallel = parallel;
  options.device = device;
  options.bf16 = spec.precision() == "bf16";
  worker::ClassificationTrainer trainer(method, data.source.images, data.source.labels,
                                        data.target_train.images, data.num_classes, options);
  const fs::path checkpoint = out_dir / "checkpoint.pt";
  int64_t first_epoch = 0;
  if (fs::exists(checkpoint)) {
    const auto state = methods::load_state_dict(checkpoint.string());
    TORCH_CHECK(worker::get_meta(state, "kind") == kind_code(method), checkpoint.string(),
                " is a checkpoint of another job kind; use a new output_dir");
    trainer.load_state(state, "trainer");
    trainer.synchronise();
    first_epoch = static_cast<int64_t>(worker::get_meta(state, "epoch"));
    log << "tandem train: resuming from " << checkpoint.string() << " after epoch " << first_epoch
        << std::endl;
  }
  log << "tandem train: " << spec.kind() << " on " << data.description << ", " << data.num_classes
      << " classes, " << spec.epochs() << " epochs x " << spec.iters() << " iterations";
  if (parallel) log << ", " << parallel->world_size() << " ranks";
  log << std::endl;
  EventLog events = leader ? EventLog(out_dir / "events.jsonl") : EventLog();
  JobProgress progress(spec, events, quiet);
  const worker::ProgressFn on_iteration = [&progress](const worker::IterationProgress& p) {
    progress(p);
  };
  const auto accuracy = [&] {
    return trainer.accuracy(data.target_test.images, data.target_test.labels);
  };
  for (int64_t epoch = first_epoch; epoch < spec.epochs(); ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    const worker::ClassificationStepStats stats = trainer.train(spec.iters(), on_iteration, epoch);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double images_per_second =
        seconds > 0 ? static_cast<double>(2 * spec.batch_size() * spec.iters()) / seconds : 0;
    RankEvent event;
    event.set_event("epoch");
    event.set_kind(spec.kind());
    event.set_epoch(static_cast<int32_t>(epoch));
    event.set_lr(stats.lr);
    event.set_ce(stats.ce);
    event.set_unsupervised(stats.unsupervised);
    event.set_loss(stats.total);
    event.set_source_batch_accuracy(stats.source_batch_accuracy);
    if (method == ClassificationMethod::kSelfEnsemble) {
      event.set_confident_share(stats.confident_share);
    }
    event.set_images_per_second(images_per_second);
    std::ostringstream line;
    line << std::fixed << std::setprecision(3) << "epoch " << epoch + 1 << "/" << spec.epochs()
         << "  lr " << std::setprecision(5) << stats.lr << std::setprecision(3) << "  ce "
         << stats.ce << "  unsupervised " << stats.unsupervised << "  source acc "
         << 100 * stats.source_batch_accuracy << "%";
    if (method == ClassificationMethod::kSelfEnsemble) {
      line << "  confident " << 100 * stats.confident_share << "%";
    }
    line << "  " << std::setprecision(0) << images_per_second << " img/s";
    const bool last = epoch + 1 == spec.epochs();
    if (last || (spec.eval_every() > 0 && (epoch + 1) % spec.eval_every() == 0)) {
      const double target = accuracy();
      event.set_target_accuracy(target);
      line << std::setprecision(2) << "  target acc " << 100 * target << "%";
      if (method == ClassificationMethod::kSelfEnsemble) {
        const double student =
            trainer.student_accuracy(data.target_test.images, data.target_test.labels);
        event.set_student_target_accuracy(student);
        line << " (student " << 100 * student << "%)";
      }
    }
    if (!leader) continue;
    methods::save_state_dict(methods::models::weights_of(predicting_network(trainer)),
                             (out_dir / "model.pt").string());
    methods::StateDict state;
    worker::set_meta(state, "kind", kind_code(method));
    worker::set_meta(state, "epoch", static_cast<double>(epoch + 1));
    trainer.save_state(state, "trainer");
    events.write(event);  // before the checkpoint, as the re-ID jobs
    methods::save_state_dict(state, checkpoint.string());  // atomic
    if (!quiet) std::cout << line.str() << std::endl;
  }
  ClassificationJobResult result;
  result.target_accuracy = accuracy();
  result.student_target_accuracy =
      trainer.student_accuracy(data.target_test.images, data.target_test.labels);
  result.test_images = data.target_test.labels.size(0);
  result.num_classes = data.num_classes;
  if (!leader) return result;
  const nlohmann::ordered_json metrics = {
      {"event", "result"},
      {"kind", spec.kind()},
      {"target_accuracy", result.target_accuracy},
      {"student_target_accuracy", result.student_target_accuracy},
      {"test_images", result.test_images},
      {"classes", result.num_classes},
      {"iterations", trainer.iteration()}};
  RankEvent result_event;
  result_event.set_event("result");
  result_event.set_kind(spec.kind());
  result_event.set_target_accuracy(result.target_accuracy);
  result_event.set_student_target_accuracy(result.student_target_accuracy);
  result_event.set_test_images(static_cast<int32_t>(result.test_images));
  result_event.set_classes(static_cast<int32_t>(result.num_classes));
  result_event.set_iterations(static_cast<int32_t>(trainer.iteration()));
  events.write(result_event);
  write_json(out_dir / "metrics.json", metrics);
  std::cout << "tandem train: " << spec.kind() << " target accuracy " << std::fixed
            << std::setprecision(4) << result.target_accuracy << " on " << result.test_images
            << " held-out target test images; " << (out_dir / "model.pt").string() << std::endl;
  return result;
}

}  // namespace tandem::jobs
