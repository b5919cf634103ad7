// Target accuracy of the classification self-training methods on the
// Fashion-MNIST source → target shift (data/fashion_mnist.h): each of source
// only, Self-Ensemble, MCC and AFN trains a fresh network from the same seed
// for N iterations (train/classification_trainer.h) and is evaluated on the
// target test set.
//
//   bench_classification_adapt [--iterations N] [--source N] [--target-train N]
//       [--target-test N] [--batch-size B] [--seed S] [--threads T]
//       [--methods source_only,self_ensemble,mcc,afn] [--dir DIR]
//       [--invert-augment P] [--color-jitter J] [--lr LR] [--width W] [--warmup N]
//       [--mcc-trade-off λ] [--afn-trade-off λ]
//
// Source: the first --source training images (grey → RGB). Target train: the
// next --target-train training images in the target domain (other garments,
// labels unused). Target test: the first --target-test images of the test
// split in the target domain; `source_test_accuracy` is on the same test
// garments in the source domain (what the shift costs). The loss figures
// are means over all iterations. Prints one JSON object.
#include <torch/torch.h>

#include <chrono>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tandem/worker/data/fashion_mnist.h"
#include "tandem/worker/train/classification_trainer.h"

namespace {
using namespace tandem::worker;  // NOLINT(google-build-using-namespace): a bench program

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream stream(s);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = kFashionMnistDefaultDir;
  int64_t n_source = 10000, n_target_train = 10000, n_target_test = 2000, threads = 2;
  std::string methods = "source_only,self_ensemble,mcc,afn";
  ClassificationOptions options;
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "bench_classification_adapt: " << flag << " needs a value\n";
      return 2;
    }
    const std::string value = argv[i + 1];
    if (flag == "--iterations")
      options.iterations = std::stoll(value);
    else if (flag == "--source")
      n_source = std::stoll(value);
    else if (flag == "--target-train")
      n_target_train = std::stoll(value);
    else if (flag == "--target-test")
      n_target_test = std::stoll(value);
    else if (flag == "--batch-size")
      options.batch_size = std::stoll(value);
    else if (flag == "--seed")
      options.seed = std::stoull(value);
    else if (flag == "--threads")
      threads = std::stoll(value);
    else if (flag == "--methods")
      methods = value;
    else if (flag == "--invert-augment")
      options.augment_invert_probability = std::stod(value);
    else if (flag == "--color-jitter")
      options.augment_color_jitter = std::stod(value);
    else if (flag == "--lr")
      options.lr = std::stod(value);
    else if (flag == "--mcc-trade-off")
      options.mcc_trade_off = std::stod(value);
    else if (flag == "--afn-trade-off")
      options.afn_trade_off = std::stod(value);
    else if (flag == "--warmup")
      options.unsupervised_warmup_iterations = std::stoll(value);
    else if (flag == "--width")
      options.backbone_width = std::stoll(value);
    else if (flag == "--dir")
      dir = value;
    else {
      std::cerr << "bench_classification_adapt: unknown flag " << flag << "\n";
      return 2;
    }
  }
  try {
    torch::set_num_threads(static_cast<int>(threads));
    const FashionMnist train =
        load_fashion_mnist(dir, FashionMnistSplit::kTrain, n_source + n_target_train);
    const FashionMnist test = load_fashion_mnist(dir, FashionMnistSplit::kTest, n_target_test);
    if (train.size() < n_source + n_target_train || test.size() < n_target_test) {
      std::cerr << "bench_classification_adapt: not enough images in " << dir << "\n";
      return 2;
    }
    const torch::Tensor source =
        fashion_domain_images(train.images.narrow(0, 0, n_source), FashionDomain::kSource, 1);
    const torch::Tensor source_labels = train.labels.narrow(0, 0, n_source).contiguous();
    const torch::Tensor target_train = fashion_domain_images(
        train.images.narrow(0, n_source, n_target_train), FashionDomain::kTarget, 2);
    const torch::Tensor target_test = fashion_domain_images(test.images, FashionDomain::kTarget, 3);
    // The same test garments in the source domain: what the shift costs.
    const torch::Tensor source_test = fashion_domain_images(test.images, FashionDomain::kSource, 3);

    std::ostringstream json;
    json << std::setprecision(4) << std::fixed;
    json << "{\"iterations\": " << options.iterations << ", \"batch_size\": " << options.batch_size
         << ", \"seed\": " << options.seed << ", \"threads\": " << threads
         << ", \"source\": " << n_source << ", \"target_train\": " << n_target_train
         << ", \"target_test\": " << n_target_test
         << ", \"invert_augment\": " << options.augment_invert_probability
         << ", \"color_jitter\": " << options.augment_color_jitter << ", \"lr\": " << options.lr
         << ", \"width\": " << options.backbone_width
         << ", \"warmup\": " << options.unsupervised_warmup_iterations
         << ", \"mcc_trade_off\": " << options.mcc_trade_off
         << ", \"afn_trade_off\": " << options.afn_trade_off << ", \"methods\": {";
    double source_only = -1;
    bool first = true;
    for (const std::string& name : split_commas(methods)) {
      const ClassificationMethod method = parse_classification_method(name);
      ClassificationTrainer trainer(method, source, source_labels, target_train,
                                    kFashionMnistClasses, options);
      ClassificationResult r;
      const auto start = std::chrono::steady_clock::now();
      r.last_steps = trainer.train(options.iterations);
      r.train_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      r.target_accuracy = trainer.accuracy(target_test, test.labels);
      r.student_target_accuracy = trainer.student_accuracy(target_test, test.labels);
      r.source_accuracy = trainer.accuracy(source_test, test.labels);
      // How many test images the most predicted class takes (1.0: collapse).
      const torch::Tensor counts =
          torch::bincount(trainer.predict(target_test), {}, kFashionMnistClasses);
      const double largest_class_share =
          counts.max().item<double>() / static_cast<double>(target_test.size(0));
      if (method == ClassificationMethod::kSourceOnly) source_only = r.target_accuracy;
      std::cerr << name << ": target " << r.target_accuracy << " (student "
                << r.student_target_accuracy << "), source test " << r.source_accuracy << ", "
                << r.train_seconds << " s\n";
      json << (first ? "" : ", ") << "\"" << name
           << "\": {\"target_accuracy\": " << r.target_accuracy
           << ", \"student_target_accuracy\": " << r.student_target_accuracy
           << ", \"source_test_accuracy\": " << r.source_accuracy
           << ", \"target_largest_predicted_class_share\": " << largest_class_share
           << ", \"mean_ce\": " << r.last_steps.ce
           << ", \"mean_unsupervised\": " << r.last_steps.unsupervised
           << ", \"mean_confident_share\": " << r.last_steps.confident_share
           << ", \"train_seconds\": " << std::setprecision(1) << r.train_seconds
           << std::setprecision(4);
      if (method != ClassificationMethod::kSourceOnly && source_only >= 0) {
        json << ", \"gain_over_source_only\": " << r.target_accuracy - source_only;
      }
      json << "}";
      first = false;
    }
    json << "}}";
    std::cout << json.str() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_classification_adapt: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
