#include "tandem/jobs/image_embedder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "support/run_tandem.h"
#include "tandem/jobs/train_jobs.h"
#include "tandem/methods/serialization.h"
#include "tandem/server/ranking_index.h"
#include "tandem/spec/job_spec.h"
#include "tandem/worker/data/image.h"
#include "tandem/worker/data/reid_dataset.h"
#include "tandem/worker/data/synth.h"

namespace tandem::jobs {
namespace {
namespace fs = std::filesystem;
using cli::testing::scratch_path;
using spec::parse_job_spec;

std::vector<std::string> lines_of(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string bytes_of(const std::string& path) {
  const auto bytes = worker::read_file_bytes(path);
  return std::string(bytes.begin(), bytes.end());
}

nlohmann::json ranking_of(const fs::path& out) {
  std::ifstream in(out / "ranking.json");
  return nlohmann::json::parse(in);
}

/// Embeds gallery images `rows` of `out`'s export from their file bytes and
/// compares with the exported rows.
void expect_embeddings_match_export(ImageEmbedder& embedder, const fs::path& out,
                                    const std::vector<int64_t>& rows) {
  const auto gallery = methods::load_state_dict((out / "gallery_features.pt").string());
  const torch::Tensor features = *gallery.find("features");
  const auto paths = lines_of(out / "gallery.txt");
  ASSERT_EQ(static_cast<int64_t>(paths.size()), features.size(0));
  for (int64_t row : rows) {
    const std::vector<float> feature = embedder.embed(out.string(), bytes_of(paths.at(row)));
    ASSERT_EQ(static_cast<int64_t>(feature.size()), features.size(1));
    const torch::Tensor mine = torch::tensor(feature);
    EXPECT_LT((mine - features[row]).abs().max().item<float>(), 1e-5F)
        << out << ": gallery row " << row << " (" << paths[row] << ")";
  }
}

/// A tiny pretrain on one synthetic domain evaluated on another, then an
/// evaluate and an MMT job on its weights, in process: each exports the
/// target's query and gallery and ranking.json; embedding an exported image's
/// bytes reproduces its exported row.
TEST(ImageEmbedder, EmbeddingsOfExportedImagesEqualTheirExportedRows) {
  const fs::path dir = scratch_path("embedder");
  fs::remove_all(dir);
  for (const char* domain : {"market", "duke"}) {
    worker::SynthOptions synth;
    synth.domain = domain;
    synth.ids = 8;
    synth.cameras = 2;
    synth.seed = 5;
    synth.height = 32;
    synth.width = 16;
    synth.images_per_camera = 2;
    synth.threads = 1;
    worker::render_market_dataset((dir / domain).string(), synth);
  }
  const std::string common =
      "backbone: small\nbackbone_width: 4\nheight: 32\nwidth: 16\nidentities: 2\ninstances: 2\n"
      "epochs: 1\niters: 1\nloader_threads: 1\nlr: 0.001\n";
  const std::string target = "target: {kind: market1501, root: " + (dir / "duke").string() + "}\n";
  const fs::path pre = dir / "pre";
  pretrain_job(
      parse_job_spec("kind: pretrain\noutput_dir: " + pre.string() +
                         "\nsource: {kind: market1501, root: " + (dir / "market").string() + "}\n" +
                         target + "warmup_epochs: 0\nmilestones: [100]\n" + common,
                     "pretrain.yaml"),
      true);

  // (a) The query export: features, ids and cameras of the target's query
  // set, paths in the same order; ranking.json names model.pt and the model.
  const auto duke =
      worker::load_reid_dataset(worker::ReidDatasetKind::kMarket1501, (dir / "duke").string());
  const auto query = methods::load_state_dict((pre / "query_features.pt").string());
  const auto gallery = methods::load_state_dict((pre / "gallery_features.pt").string());
  const auto query_paths = lines_of(pre / "query.txt");
  ASSERT_EQ(query_paths.size(), duke.query.size());
  const auto n = static_cast<int64_t>(duke.query.size());
  EXPECT_EQ(query.find("features")->sizes(),
            torch::IntArrayRef({n, gallery.find("features")->size(1)}));
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(query_paths[i], duke.query[i].path);
    EXPECT_EQ((*query.find("pids"))[i].item<int64_t>(), duke.query[i].pid);
    EXPECT_EQ((*query.find("cameras"))[i].item<int64_t>(), duke.query[i].camera);
  }
  EXPECT_TRUE(torch::allclose(query.find("features")->norm(2, 1), torch::ones({n}), 1e-4, 1e-4));
  const auto ranking = ranking_of(pre);
  EXPECT_EQ(ranking["weights"], "model.pt");
  EXPECT_EQ(ranking["backbone"], "small");
  EXPECT_EQ(ranking["backbone_width"], 4);
  EXPECT_EQ(ranking["height"], 32);
  EXPECT_EQ(ranking["width"], 16);

  // (b) An exported image's bytes embed to its exported row.
  ImageEmbedder embedder;
  const int64_t rows = gallery.find("features")->size(0);
  expect_embeddings_match_export(embedder, pre, {0, rows / 2, rows - 1});
  EXPECT_EQ(embed_image_bytes(pre.string(), bytes_of(duke.gallery[1].path)),
            embedder.embed(pre.string(), bytes_of(duke.gallery[1].path)));
  // ... and ranks first against the gallery in the server's index.
  auto index = server::RankingIndex::load(pre.string());
  ASSERT_TRUE(index.ok()) << index.status();
  auto top =
      (*index)->rank_features(embedder.embed(pre.string(), bytes_of(duke.gallery[2].path)), 3);
  ASSERT_TRUE(top.ok()) << top.status();
  ASSERT_EQ(top->entries_size(), 3);
  // Relative to the data set: the server never shows its absolute paths.
  EXPECT_EQ(top->entries(0).gallery_path(),
            std::filesystem::path(duke.gallery[2].path).lexically_relative(duke.root).string());
  EXPECT_LT(top->entries(0).distance(), 1e-3);
  auto by_index = (*index)->rank_query(0, 0);
  ASSERT_TRUE(by_index.ok()) << by_index.status();
  EXPECT_EQ(by_index->query_person_id(), duke.query[0].pid);

  // (c) Bytes that are no image: std::invalid_argument saying why.
  const auto invalid = [&](const std::string& bytes, const std::string& expected) {
    try {
      embedder.embed(pre.string(), bytes);
      ADD_FAILURE() << "no error for " << expected;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  };
  invalid("certainly not a picture", "neither JPEG nor PNG");
  invalid("", "empty");
  const std::string jpeg = bytes_of(duke.gallery[0].path);
  invalid(jpeg.substr(0, jpeg.size() / 2), "uploaded image");
  // A folder without an export: runtime_error naming ranking.json.
  try {
    embedder.embed((dir / "market").string(), jpeg);
    ADD_FAILURE() << "no error without an export";
  } catch (const std::invalid_argument&) {
    ADD_FAILURE() << "a missing export is not the request's fault";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("ranking.json: job has no ranking export yet"),
              std::string::npos)
        << e.what();
  }

  // evaluate: ranking.json names spec.weights (outside its output folder:
  // absolute).
  const fs::path eval = dir / "eval";
  evaluate_job(parse_job_spec("kind: evaluate\noutput_dir: " + eval.string() + "\n" + target +
                                  "weights: " + (pre / "model.pt").string() + "\n" + common,
                              "evaluate.yaml"),
               true);
  EXPECT_EQ(ranking_of(eval)["weights"],
            fs::absolute(pre / "model.pt").lexically_normal().string());
  EXPECT_TRUE(fs::exists(eval / "query_features.pt"));
  expect_embeddings_match_export(embedder, eval, {1});

  // mmt: ranking.json names best.pt.
  const fs::path mmt = dir / "mmt";
  mmt_job(parse_job_spec("kind: mmt\noutput_dir: " + mmt.string() + "\n" + target +
                             "init_1: " + (pre / "model.pt").string() +
                             "\ninit_2: " + (pre / "model.pt").string() +
                             "\nclustering: kmeans\nk: 4\nbn_group_size: 0\n" + common,
                         "mmt.yaml"),
          true);
  EXPECT_EQ(ranking_of(mmt)["weights"], "best.pt");
  expect_embeddings_match_export(embedder, mmt, {0, rows - 1});
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tandem::jobs
