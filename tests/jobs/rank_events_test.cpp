// The rank events (jobs/rank_events.h): events.jsonl lines as
// tandem.v1.RankEvent and back, and the worker's coalescing of iteration
// events (the worker itself runs end to end in cli/server_command_test).
#include "tandem/jobs/rank_events.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/run_tandem.h"

namespace tandem::jobs {
namespace {

namespace fs = std::filesystem;
using cli::testing::scratch_path;
using cli::testing::write_file;
using google::protobuf::util::MessageDifferencer;

RankEvent iteration(int epoch, int i, int of) {
  return parse_rank_event("{\"event\":\"iteration\",\"epoch\":" + std::to_string(epoch) +
                          ",\"iteration\":" + std::to_string(i) +
                          ",\"iterations\":" + std::to_string(of) + "}");
}

/// The same events in the same order (messages compared field by field).
::testing::AssertionResult same_events(const std::vector<RankEvent>& actual,
                                       const std::vector<RankEvent>& expected) {
  const auto listed = [](const std::vector<RankEvent>& events) {
    std::string text;
    for (const RankEvent& event : events) text += "\n  " + rank_event_json(event);
    return text;
  };
  bool same = actual.size() == expected.size();
  for (size_t i = 0; same && i < actual.size(); ++i) {
    same = MessageDifferencer::Equals(actual[i], expected[i]);
  }
  if (same) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "got" << listed(actual) << "\nexpected" << listed(expected);
}

TEST(CoalesceIterations, KeepsTheLastOfARunAndEachEpochsLast) {
  const RankEvent phase = parse_rank_event(R"({"event":"phase","phase":"evaluate","epoch":0})");
  const RankEvent epoch = parse_rank_event(R"({"event":"epoch","epoch":0,"images_per_second":10})");
  const std::vector<RankEvent> events = {iteration(0, 27, 30),
                                         iteration(0, 28, 30),
                                         iteration(0, 29, 30),
                                         iteration(0, 30, 30),
                                         phase,
                                         epoch,
                                         iteration(1, 1, 30),
                                         iteration(1, 2, 30),
                                         iteration(1, 3, 30)};
  const std::vector<RankEvent> expected = {iteration(0, 30, 30), phase, epoch, iteration(1, 3, 30)};
  EXPECT_TRUE(same_events(coalesce_iterations(events), expected));
}

TEST(CoalesceIterations, AnEpochsLastIsKeptInsideARun) {
  // A fast epoch: its last iteration and the next epoch's first in one read.
  const std::vector<RankEvent> events = {iteration(0, 29, 30), iteration(0, 30, 30),
                                         iteration(1, 1, 30), iteration(1, 2, 30)};
  const std::vector<RankEvent> expected = {iteration(0, 30, 30), iteration(1, 2, 30)};
  EXPECT_TRUE(same_events(coalesce_iterations(events), expected));
}

TEST(CoalesceIterations, OtherEventsPassUnchangedAndInOrder) {
  // (A line that is no event never gets here: read_rank_events refuses it.)
  const std::vector<RankEvent> events = {
      parse_rank_event(R"({"event":"phase","phase":"extract"})"),
      parse_rank_event(R"({"event":"phase","phase":"cluster"})"),
      parse_rank_event(R"({"event":"epoch","kind":"mmt","epoch":0,"clusters":7})"),
      iteration(0, 1, 5)};
  EXPECT_TRUE(same_events(coalesce_iterations(events), events));
  EXPECT_TRUE(coalesce_iterations({}).empty());
}

/// One event of every type, as the job runners write them.
std::vector<RankEvent> one_of_each_type() {
  std::vector<RankEvent> events;
  events.push_back(phase_event("cluster", 3));

  RankEvent it;
  it.set_event("iteration");
  it.set_kind("mmt");
  it.set_epoch(3);
  it.set_iteration(7);
  it.set_iterations(400);
  (*it.mutable_losses())["ce"] = 1.25;
  (*it.mutable_losses())["soft_tri"] = 0.5;
  it.set_images_per_second(96.5);
  it.set_eta_seconds(12.75);
  events.push_back(it);

  RankEvent mmt;
  mmt.set_event("epoch");
  mmt.set_kind("mmt");
  mmt.set_epoch(3);
  mmt.set_clusters(41);
  mmt.set_noise(0);
  mmt.set_eps(0.125);
  mmt.mutable_pseudo_labels()->set_pair_precision(0.75);
  mmt.mutable_pseudo_labels()->set_pair_recall(0.5);
  mmt.mutable_pseudo_labels()->set_adjusted_rand(-0.25);
  mmt.set_ce(2.5);
  mmt.set_triplet(0.25);
  mmt.set_soft_ce(3.5);
  mmt.set_soft_triplet(0.375);
  mmt.set_loss(4.0);
  mmt.set_images_per_second(100);
  mmt.set_world_size(2);
  mmt.mutable_communication()->set_backward_passes(6);
  mmt.mutable_communication()->set_bytes(int64_t{5} << 33);  // beyond 32 bits
  mmt.mutable_communication()->set_backward_seconds(1.5);
  mmt.mutable_communication()->set_communication_seconds(0.5);
  mmt.mutable_communication()->set_overlapped_seconds(0.25);
  mmt.add_map(40.5);
  mmt.add_map(42.0);
  mmt.add_rank1(50);
  mmt.add_rank1(55);
  mmt.add_rank5(60);
  mmt.add_rank5(66);
  mmt.set_best(true);
  mmt.set_checkpoint("/x/checkpoint.pt");
  events.push_back(mmt);

  RankEvent pretrain;
  pretrain.set_event("epoch");
  pretrain.set_kind("pretrain");
  pretrain.set_epoch(0);
  pretrain.set_lr(3.5e-4);
  pretrain.set_ce(4.5);
  pretrain.set_triplet(0.75);
  pretrain.set_train_accuracy(0.125);
  pretrain.add_map(12.5);
  pretrain.add_rank1(25);
  pretrain.add_rank5(37.5);
  events.push_back(pretrain);

  RankEvent classification;
  classification.set_event("epoch");
  classification.set_kind("self_ensemble");
  classification.set_epoch(1);
  classification.set_unsupervised(0.0);
  classification.set_source_batch_accuracy(0.875);
  classification.set_confident_share(0.5);
  classification.set_target_accuracy(0.625);
  classification.set_student_target_accuracy(0.5);
  events.push_back(classification);

  RankEvent evaluation;
  evaluation.set_event("evaluation");
  evaluation.set_kind("evaluate");
  evaluation.set_weights("/runs/pre/model.pt");
  evaluation.set_target("/data/duke");
  evaluation.add_map(30.25);
  evaluation.add_rank1(45.5);
  evaluation.add_rank5(60.75);
  events.push_back(evaluation);

  RankEvent result;
  result.set_event("result");
  result.set_kind("afn");
  result.set_target_accuracy(0.75);
  result.set_student_target_accuracy(0.75);
  result.set_test_images(2000);
  result.set_classes(10);
  result.set_iterations(1500);
  events.push_back(result);
  return events;
}

TEST(RankEvents, EveryTypeRoundTripsThroughItsLine) {
  for (const RankEvent& event : one_of_each_type()) {
    const std::string line = rank_event_json(event);
    SCOPED_TRACE(line);
    EXPECT_EQ(line.find('\n'), std::string::npos) << "one line";
    EXPECT_TRUE(MessageDifferencer::Equals(parse_rank_event(line, "test"), event));
  }
}

TEST(RankEvents, LinesUseTheProtoNamesAndJsonNumbers) {
  const std::vector<RankEvent> events = one_of_each_type();
  // (Not const: operator[] of a missing key is then null, not undefined.)
  nlohmann::json mmt = nlohmann::json::parse(rank_event_json(events[2]));
  // Proto field names, not the JSON mapping's lowerCamelCase.
  for (const char* key : {"images_per_second", "soft_ce", "soft_triplet", "pseudo_labels",
                          "world_size", "mAP", "rank1", "rank5"}) {
    EXPECT_TRUE(mmt.contains(key)) << key << " in " << mmt.dump();
  }
  EXPECT_TRUE(mmt["pseudo_labels"].contains("adjusted_rand")) << mmt.dump();
  // Counters (int32) and figures (double) are JSON numbers; int64 is a
  // string in protobuf's JSON mapping.
  EXPECT_TRUE(mmt["epoch"].is_number_integer()) << mmt.dump();
  EXPECT_EQ(mmt["epoch"], 3);
  EXPECT_TRUE(mmt["clusters"].is_number_integer()) << mmt.dump();
  EXPECT_EQ(mmt["clusters"], 41);
  EXPECT_TRUE(mmt["noise"].is_number()) << "set to 0 is present: " << mmt.dump();
  EXPECT_TRUE(mmt["eps"].is_number()) << mmt.dump();
  EXPECT_TRUE(mmt["pseudo_labels"]["adjusted_rand"].is_number()) << mmt.dump();
  EXPECT_TRUE(mmt["communication"]["backward_passes"].is_number()) << mmt.dump();
  EXPECT_TRUE(mmt["communication"]["bytes"].is_string()) << mmt.dump();
  EXPECT_EQ(mmt["communication"]["bytes"], std::to_string(int64_t{5} << 33));
  // The retrieval metrics are always arrays, one entry per evaluated model.
  ASSERT_TRUE(mmt["mAP"].is_array()) << mmt.dump();
  ASSERT_EQ(mmt["mAP"].size(), 2u);
  EXPECT_TRUE(mmt["mAP"][0].is_number()) << mmt.dump();
  EXPECT_EQ(mmt["mAP"][1].get<double>(), 42.0);
  EXPECT_TRUE(mmt["best"].is_boolean()) << mmt.dump();
  nlohmann::json evaluation = nlohmann::json::parse(rank_event_json(events[5]));
  ASSERT_TRUE(evaluation["mAP"].is_array()) << evaluation.dump();
  EXPECT_EQ(evaluation["mAP"].size(), 1u);
  EXPECT_TRUE(evaluation["rank1"].is_array()) << evaluation.dump();
  // An iteration's loss terms are a map under "losses"; what is unset is absent.
  nlohmann::json it = nlohmann::json::parse(rank_event_json(events[1]));
  ASSERT_TRUE(it["losses"].is_object()) << it.dump();
  EXPECT_EQ(it["losses"]["soft_tri"].get<double>(), 0.5);
  EXPECT_FALSE(it.contains("soft_tri")) << it.dump();
  for (const char* key : {"clusters", "mAP", "best", "communication", "target_accuracy"}) {
    EXPECT_FALSE(it.contains(key)) << key << " in " << it.dump();
  }
  // A phase event at epoch 0 still says epoch 0.
  const nlohmann::json phase = nlohmann::json::parse(rank_event_json(phase_event("extract", 0)));
  EXPECT_EQ(phase, nlohmann::json::parse(R"({"event":"phase","phase":"extract","epoch":0})"));
}

TEST(RankEvents, PhaseEvent) {
  const RankEvent event = phase_event("checkpoint", 12);
  EXPECT_EQ(event.event(), "phase");
  EXPECT_EQ(event.phase(), "checkpoint");
  ASSERT_TRUE(event.has_epoch());
  EXPECT_EQ(event.epoch(), 12);
}

/// The message of parse_rank_event's error for `line` ("" when none).
std::string error_of(const std::string& line, const std::string& where) {
  try {
    parse_rank_event(line, where);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(RankEvents, ALineThatIsNoEventIsAnErrorNamingWhere) {
  const std::string not_json = error_of("not json", "events.jsonl:3");
  EXPECT_EQ(not_json.rfind("events.jsonl:3: ", 0), 0u) << not_json;
  const std::string unknown = error_of(R"({"event":"epoch","colour":"red"})", "events.jsonl:4");
  EXPECT_EQ(unknown.rfind("events.jsonl:4: ", 0), 0u) << unknown;
  EXPECT_NE(unknown.find("colour"), std::string::npos) << unknown;
  // The old shape: an iteration's loss term at the top level is an unknown key
  // now (the terms are under "losses").
  const std::string old_loss = error_of(R"({"event":"iteration","tri":0.5})", "old");
  EXPECT_EQ(old_loss.rfind("old: ", 0), 0u) << old_loss;
  const std::string wrong_type = error_of(R"({"event":"epoch","clusters":"many"})", "w");
  EXPECT_EQ(wrong_type.rfind("w: ", 0), 0u) << wrong_type;
  const std::string no_event = error_of(R"({"epoch":1,"clusters":3})", "events.jsonl:5");
  EXPECT_EQ(no_event.rfind("events.jsonl:5: ", 0), 0u) << no_event;
  EXPECT_NE(no_event.find("event"), std::string::npos) << no_event;
  EXPECT_EQ(error_of(R"({"event":"epoch"})", "ok"), "");
}

TEST(RankEvents, TheWorkersReadingIgnoresKeysANewerEngineAdded) {
  const std::string line = R"({"event":"epoch","epoch":2,"clusters":7,"colour":"red"})";
  EXPECT_THROW(parse_rank_event(line, "w"), std::invalid_argument);
  const RankEvent event = parse_rank_event(line, "w", UnknownKeys::kIgnore);
  EXPECT_EQ(event.event(), "epoch");
  EXPECT_EQ(event.epoch(), 2);
  EXPECT_EQ(event.clusters(), 7);
  // Everything else is still an error.
  EXPECT_THROW(
      parse_rank_event(R"({"event":"epoch","clusters":"many"})", "w", UnknownKeys::kIgnore),
      std::invalid_argument);
  EXPECT_THROW(parse_rank_event(R"({"colour":"red"})", "w", UnknownKeys::kIgnore),
               std::invalid_argument);
}

TEST(RankEvents, ReadRankEventsReadsEveryLineAndNamesPathAndLine) {
  const fs::path path = scratch_path("rank-events.jsonl");
  const std::vector<RankEvent> events = one_of_each_type();
  std::string text;
  for (const RankEvent& event : events) text += rank_event_json(event) + "\n";
  write_file(path, text);
  EXPECT_TRUE(same_events(read_rank_events(path), events));

  // A bad line: the error names the file and the line (empty lines count).
  write_file(path, rank_event_json(events[0]) + "\n\n" + rank_event_json(events[1]) +
                       "\n{\"event\":\"epoch\",\"clusters\":\"many\"}\n");
  try {
    read_rank_events(path);
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path.string() + ":4: ", 0), 0u) << e.what();
  }
  fs::remove(path);
  EXPECT_TRUE(read_rank_events(path).empty()) << "a missing log is no events";
}

}  // namespace
}  // namespace tandem::jobs
