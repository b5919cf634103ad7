#include "tandem/worker/data/synth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <tuple>

#include "tandem/worker/data/image.h"
#include "tandem/worker/data/reid_dataset.h"

namespace tandem::worker {
namespace {

namespace fs = std::filesystem;

SynthOptions small_options() {
  SynthOptions options;
  options.ids = 10;
  options.images_per_camera = 3;
  options.distractor_fraction = 0.1;
  return options;
}

std::string scratch(const std::string& name) {
  const fs::path path =
      fs::temp_directory_path() / ("tandem-synth-" + std::to_string(::getpid()) + "-" + name);
  fs::remove_all(path);
  return path.string();
}

// Every file under `root`, relative path → bytes.
std::map<std::string, std::string> read_tree(const std::string& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    files[fs::relative(entry.path(), root).string()] =
        std::string(std::istreambuf_iterator<char>(in), {});
  }
  return files;
}

std::string error_of(const SynthOptions& options) {
  try {
    options.validate();
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "";
}

TEST(SynthOptions, DefaultsAreValid) {
  EXPECT_NO_THROW(SynthOptions{}.validate());
}

TEST(SynthOptions, RejectsEachFieldOutOfRangeByName) {
  const std::vector<std::pair<std::string, std::function<void(SynthOptions&)>>> cases = {
      {"domain", [](SynthOptions& o) { o.domain = ""; }},
      {"ids", [](SynthOptions& o) { o.ids = 1; }},
      {"ids", [](SynthOptions& o) { o.ids = 10000; }},
      {"cameras", [](SynthOptions& o) { o.cameras = 1; }},
      {"cameras", [](SynthOptions& o) { o.cameras = 10; }},
      {"height", [](SynthOptions& o) { o.height = 16; }},
      {"width", [](SynthOptions& o) { o.width = 0; }},
      {"images_per_camera", [](SynthOptions& o) { o.images_per_camera = 0; }},
      {"min_cameras_per_id", [](SynthOptions& o) { o.min_cameras_per_id = 7; }},
      {"min_cameras_per_id", [](SynthOptions& o) { o.min_cameras_per_id = 1; }},
      {"query_cameras_per_id", [](SynthOptions& o) { o.query_cameras_per_id = 0; }},
      {"jpeg_quality", [](SynthOptions& o) { o.jpeg_quality = 101; }},
      {"distractor_fraction", [](SynthOptions& o) { o.distractor_fraction = -0.1; }},
      {"threads", [](SynthOptions& o) { o.threads = -1; }},
  };
  for (const auto& [field, change] : cases) {
    SynthOptions options;
    change(options);
    const std::string message = error_of(options);
    EXPECT_NE(message.find("SynthOptions." + field + " "), std::string::npos)
        << field << ": '" << message << "'";
  }
  EXPECT_THROW(plan_market_dataset([] {
                 SynthOptions o;
                 o.cameras = 1;
                 return o;
               }()),
               std::invalid_argument);
}

TEST(SynthPlan, SplitsIdsAndNamesFilesTheMarketWay) {
  const SynthOptions options = small_options();
  const auto plan = plan_market_dataset(options);
  const std::regex name(R"(\d{4}_c[1-9]s1_\d{6}_00\.jpg)");
  std::set<std::string> names;
  std::map<int64_t, std::set<int64_t>> cameras_of;            // pid → cameras
  std::map<std::pair<int64_t, int64_t>, int64_t> per_camera;  // (pid, camera) → images
  int64_t distractors = 0, gallery_real = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const SynthImage& image = plan[i];
    EXPECT_EQ(image.index, static_cast<int64_t>(i));
    EXPECT_TRUE(std::regex_match(image.file_name(), name)) << image.file_name();
    EXPECT_TRUE(
        names.insert(std::string(split_folder(image.split)) + "/" + image.file_name()).second)
        << "duplicate " << image.file_name();
    EXPECT_GE(image.camera, 1);
    EXPECT_LE(image.camera, options.cameras);
    EXPECT_LT(image.frame, 1'000'000);
    if (image.pid == 0) {
      EXPECT_EQ(image.split, SynthSplit::kGallery);
      EXPECT_GE(image.identity, options.ids);
      ++distractors;
      continue;
    }
    EXPECT_EQ(image.identity, image.pid - 1);
    // Train ids are 1..5, test ids 6..10.
    EXPECT_EQ(image.split == SynthSplit::kTrain, image.pid <= 5) << image.file_name();
    gallery_real += image.split == SynthSplit::kGallery;
    cameras_of[image.pid].insert(image.camera);
    ++per_camera[{image.pid, image.camera}];
  }
  EXPECT_EQ(cameras_of.size(), 10u);
  for (const auto& [pid, cameras] : cameras_of) {
    EXPECT_GE(static_cast<int64_t>(cameras.size()), options.min_cameras_per_id) << pid;
  }
  for (const auto& [key, count] : per_camera) EXPECT_EQ(count, options.images_per_camera);
  EXPECT_EQ(distractors, std::llround(0.1 * static_cast<double>(gallery_real)));
  EXPECT_EQ(plan_market_dataset(options).size(), plan.size());
}

// The Market-1501 protocol drops same-id same-camera gallery images, so each
// query needs its id in the gallery from another camera.
void expect_cross_camera_matches(const SynthOptions& options) {
  const auto plan = plan_market_dataset(options);
  std::map<int64_t, std::set<int64_t>> query_cameras, gallery_cameras;
  for (const auto& image : plan) {
    if (image.split == SynthSplit::kQuery) {
      EXPECT_TRUE(query_cameras[image.pid].insert(image.camera).second)
          << "two queries of " << image.pid << " in camera " << image.camera;
    }
    if (image.split == SynthSplit::kGallery) gallery_cameras[image.pid].insert(image.camera);
  }
  EXPECT_EQ(static_cast<int64_t>(query_cameras.size()), options.ids - (options.ids + 1) / 2);
  for (const auto& [pid, cameras] : query_cameras) {
    EXPECT_LE(static_cast<int64_t>(cameras.size()), options.query_cameras_per_id);
    for (int64_t camera : cameras) {
      bool matched = false;
      for (int64_t other : gallery_cameras[pid]) matched |= other != camera;
      EXPECT_TRUE(matched) << "query " << pid << " in camera " << camera;
    }
  }
}

TEST(SynthPlan, EveryQueryHasAGalleryMatchInAnotherCamera) {
  expect_cross_camera_matches(small_options());
  SynthOptions one_each = small_options();
  one_each.ids = 31;
  one_each.images_per_camera = 1;
  one_each.query_cameras_per_id = one_each.cameras;  // capped so one camera stays in the gallery
  expect_cross_camera_matches(one_each);
}

TEST(SynthDataset, WritesTheMarketLayoutByteIdenticallyForASeed) {
  SynthOptions options = small_options();
  options.threads = 1;
  const std::string a = scratch("a"), b = scratch("b"), c = scratch("c");
  const SynthSummary summary = render_market_dataset(a, options);
  options.threads = 3;  // the thread count never changes a byte
  render_market_dataset(b, options);
  options.seed = 2;
  render_market_dataset(c, options);

  const auto files = read_tree(a);
  EXPECT_EQ(files, read_tree(b));
  const auto other = read_tree(c);
  int64_t differing = 0;
  for (const auto& [path, bytes] : files) {
    const auto it = other.find(path);
    differing += it == other.end() || it->second != bytes;
  }
  EXPECT_GT(differing, static_cast<int64_t>(files.size()) / 2);

  // Counts per folder match the summary and the plan.
  std::map<std::string, int64_t> per_folder;
  for (const auto& [path, bytes] : files) {
    const fs::path p(path);
    if (p.extension() == ".jpg") ++per_folder[p.parent_path().string()];
  }
  EXPECT_EQ(per_folder["bounding_box_train"], summary.train_images);
  EXPECT_EQ(per_folder["query"], summary.query_images);
  EXPECT_EQ(per_folder["bounding_box_test"], summary.gallery_images);
  EXPECT_EQ(summary.images(), static_cast<int64_t>(plan_market_dataset(small_options()).size()));
  EXPECT_EQ(summary.train_ids, 5);
  EXPECT_EQ(summary.test_ids, 5);
  EXPECT_GT(summary.distractor_images, 0);
  EXPECT_GT(summary.bytes, 0);
  EXPECT_TRUE(files.count("tandem_synth.txt"));

  // The images decode at the requested size, and the folder reads as a data set.
  std::string a_query;
  for (const auto& [path, bytes] : files) {
    if (fs::path(path).parent_path() == "query") a_query = (fs::path(a) / path).string();
  }
  const Image image = read_image(a_query);
  EXPECT_EQ(image.height, options.height);
  EXPECT_EQ(image.width, options.width);
  const ReidDataset dataset = load_reid_dataset(ReidDatasetKind::kFolder, a);
  EXPECT_EQ(static_cast<int64_t>(dataset.train.size()), summary.train_images);
  EXPECT_EQ(static_cast<int64_t>(dataset.query.size()), summary.query_images);
  EXPECT_EQ(static_cast<int64_t>(dataset.gallery.size()), summary.gallery_images);
  EXPECT_EQ(dataset.num_train_ids, 5);
  // Six cameras and fewer than 1502 ids also pass Market-1501's own checks.
  EXPECT_NO_THROW(load_reid_dataset(ReidDatasetKind::kMarket1501, a));
  for (const auto& dir : {a, b, c}) fs::remove_all(dir);
}

TEST(SynthDataset, ReplacesItsOwnImagesButRefusesAForeignFolder) {
  const std::string dir = scratch("rerender");
  SynthOptions options = small_options();
  const SynthSummary first = render_market_dataset(dir, options);
  EXPECT_EQ(first.unchanged, 0);
  const auto files = read_tree(dir);
  const SynthSummary again = render_market_dataset(dir, options);
  EXPECT_EQ(again.unchanged, again.images());  // same bytes: nothing rewritten
  EXPECT_EQ(read_tree(dir), files);
  options.ids = 4;
  const SynthSummary fewer = render_market_dataset(dir, options);
  int64_t images = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    images += entry.path().extension() == ".jpg";
  }
  EXPECT_EQ(images, fewer.images());  // no stale images of the first render
  EXPECT_LT(fewer.unchanged, fewer.images());

  const std::string foreign = scratch("foreign");
  fs::create_directories(fs::path(foreign) / "query");
  std::ofstream(fs::path(foreign) / "query" / "0001_c1s1_000001_00.jpg") << "x";
  try {
    render_market_dataset(foreign, options);
    ADD_FAILURE() << "rendered into a folder it did not make";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("tandem_synth.txt"), std::string::npos)
        << error.what();
  }
  EXPECT_TRUE(fs::exists(fs::path(foreign) / "query" / "0001_c1s1_000001_00.jpg"));
  fs::remove_all(dir);
  fs::remove_all(foreign);
}

// The mean colour of the torso band and of the leg band of the box's central
// strip (where a person is), divided by the image's mean grey level (which
// takes out most of a camera's gain): 6 values.
std::vector<double> appearance(const Image& image) {
  std::vector<double> feature(6, 0.0);
  const auto band = [&](double top, double bottom, double* out) {
    double n = 0;
    for (auto y = static_cast<int64_t>(top * image.height);
         y < static_cast<int64_t>(bottom * image.height); ++y) {
      for (int64_t x = image.width * 3 / 8; x < image.width * 5 / 8; ++x) {
        for (int c = 0; c < 3; ++c) out[c] += image.row(y)[3 * x + c] / 255.0;
        n += 1;
      }
    }
    for (int c = 0; c < 3; ++c) out[c] /= n;
  };
  band(0.25, 0.45, feature.data());
  band(0.6, 0.8, feature.data() + 3);
  double grey = 0;
  for (uint8_t v : image.pixels) grey += v / 255.0;
  grey /= static_cast<double>(image.pixels.size());
  for (double& v : feature) v /= grey;
  return feature;
}

double distance(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(d);
}

TEST(SynthRender, AnIdentityLooksMoreLikeItselfThanLikeOthers) {
  for (const std::string name : {"market", "duke", "msmt"}) {
    const DomainStyle domain = domain_style(name);
    std::vector<CameraStyle> cameras;
    for (uint64_t c = 0; c < 4; ++c) {
      Rng rng(7, {c});
      cameras.push_back(sample_camera(domain, rng));
    }
    constexpr int kIds = 12, kImages = 8;
    std::vector<std::vector<std::vector<double>>> hists(kIds);
    for (int id = 0; id < kIds; ++id) {
      Rng identity_rng(11, {static_cast<uint64_t>(id)});
      const Identity person = sample_identity(domain, identity_rng);
      for (int k = 0; k < kImages; ++k) {
        Rng rng(13, {static_cast<uint64_t>(id), static_cast<uint64_t>(k)});
        const Image image =
            render_person(person, cameras[k % cameras.size()], domain, rng, 128, 64);
        ASSERT_EQ(image.height, 128);
        ASSERT_EQ(image.width, 64);
        ASSERT_EQ(image.pixels.size(), 128u * 64u * 3u);
        hists[id].push_back(appearance(image));
      }
    }
    double same = 0, different = 0;
    int64_t same_n = 0, different_n = 0, rank1 = 0;
    for (int a = 0; a < kIds; ++a) {
      for (int i = 0; i < kImages; ++i) {
        double best = 1e9;
        int best_id = -1;
        for (int b = 0; b < kIds; ++b) {
          for (int j = 0; j < kImages; ++j) {
            if (a == b && i == j) continue;
            const double d = distance(hists[a][i], hists[b][j]);
            (a == b ? same : different) += d;
            ++(a == b ? same_n : different_n);
            if (d < best) best = d, best_id = b;
          }
        }
        rank1 += best_id == a;
      }
    }
    same /= static_cast<double>(same_n);
    different /= static_cast<double>(different_n);
    EXPECT_LT(same, 0.75 * different) << name << ": same " << same << ", different " << different;
    // Nearest neighbour by colour alone finds the identity far above chance (1/12).
    EXPECT_GT(static_cast<double>(rank1) / (kIds * kImages), 0.4)
        << name << ": rank-1 " << static_cast<double>(rank1) / (kIds * kImages);
  }
}

// Mean value and saturation (HSV, in [0, 1]) over a rendered set.
std::pair<double, double> brightness_and_saturation(const std::string& domain_name) {
  SynthOptions options = small_options();
  options.domain = domain_name;
  options.ids = 20;
  double value = 0, saturation = 0;
  int64_t n = 0;
  for (const SynthImage& planned : plan_market_dataset(options)) {
    const Image image = render_synth_image(options, planned);
    for (size_t i = 0; i < image.pixels.size(); i += 3) {
      const int hi = std::max({image.pixels[i], image.pixels[i + 1], image.pixels[i + 2]});
      const int lo = std::min({image.pixels[i], image.pixels[i + 1], image.pixels[i + 2]});
      value += hi / 255.0;
      saturation += hi == 0 ? 0.0 : static_cast<double>(hi - lo) / hi;
      ++n;
    }
  }
  return {value / static_cast<double>(n), saturation / static_cast<double>(n)};
}

TEST(SynthDomains, PresetsDifferInBrightnessAndSaturation) {
  const auto [market_value, market_saturation] = brightness_and_saturation("market");
  const auto [duke_value, duke_saturation] = brightness_and_saturation("duke");
  EXPECT_GT(market_value, duke_value + 0.05);
  EXPECT_GT(market_saturation, duke_saturation + 0.03);
}

TEST(SynthDomains, AnyNameHasAStyleFromItsHash) {
  const DomainStyle a = domain_style("campus-north"), again = domain_style("campus-north");
  const DomainStyle b = domain_style("campus-south");
  EXPECT_EQ(a.hash, again.hash);
  EXPECT_EQ(a.hues, again.hues);
  EXPECT_EQ(a.saturation, again.saturation);
  EXPECT_NE(a.hash, b.hash);
  EXPECT_NE(a.hues, b.hues);
  EXPECT_NE(domain_style("market").background, domain_style("msmt").background);
  // Cameras of one domain are drawn from it deterministically.
  Rng r1(3), r2(3);
  const CameraStyle c1 = sample_camera(a, r1), c2 = sample_camera(a, r2);
  EXPECT_EQ(c1.gain, c2.gain);
  EXPECT_EQ(c1.background_top, c2.background_top);
}

}  // namespace
}  // namespace tandem::worker
