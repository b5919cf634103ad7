// The worker's event forwarding (cli/worker_command.h); the worker itself
// runs end to end in server_command_test.
#include "tandem/cli/worker_command.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tandem::cli {
namespace {

std::string iteration(int epoch, int i, int of) {
  return "{\"event\":\"iteration\",\"epoch\":" + std::to_string(epoch) +
         ",\"iteration\":" + std::to_string(i) + ",\"iterations\":" + std::to_string(of) + "}";
}

TEST(CoalesceIterations, KeepsTheLastOfARunAndEachEpochsLast) {
  const std::string phase = R"({"event":"phase","phase":"evaluate","epoch":0})";
  const std::string epoch = R"({"event":"epoch","epoch":0,"images_per_second":10})";
  const std::vector<std::string> lines = {iteration(0, 27, 30),
                                          iteration(0, 28, 30),
                                          iteration(0, 29, 30),
                                          iteration(0, 30, 30),
                                          phase,
                                          epoch,
                                          iteration(1, 1, 30),
                                          iteration(1, 2, 30),
                                          iteration(1, 3, 30)};
  const std::vector<std::string> expected = {iteration(0, 30, 30), phase, epoch,
                                             iteration(1, 3, 30)};
  EXPECT_EQ(coalesce_iterations(lines), expected);
}

TEST(CoalesceIterations, AnEpochsLastIsKeptInsideARun) {
  // A fast epoch: its last iteration and the next epoch's first in one read.
  const std::vector<std::string> lines = {iteration(0, 29, 30), iteration(0, 30, 30),
                                          iteration(1, 1, 30), iteration(1, 2, 30)};
  const std::vector<std::string> expected = {iteration(0, 30, 30), iteration(1, 2, 30)};
  EXPECT_EQ(coalesce_iterations(lines), expected);
}

TEST(CoalesceIterations, OtherLinesPassUnchangedAndInOrder) {
  const std::vector<std::string> lines = {R"({"event":"phase","phase":"extract"})",
                                          R"({"event":"phase","phase":"cluster"})", "not json",
                                          iteration(0, 1, 5)};
  EXPECT_EQ(coalesce_iterations(lines), lines);
  EXPECT_TRUE(coalesce_iterations({}).empty());
}

}  // namespace
}  // namespace tandem::cli
