// Test support for `tandem train` jobs: bit-identity of saved state dicts
// and the kill-and-resume drill of the resume tests.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>
#include <thread>

#include "support/run_tandem.h"
#include "tandem/methods/serialization.h"

namespace tandem::cli::testing {

/// The tensors of two state-dict files are bit-identical.
inline void expect_same_tensors(const std::filesystem::path& a, const std::filesystem::path& b) {
  const auto x = methods::load_state_dict(a.string());
  const auto y = methods::load_state_dict(b.string());
  ASSERT_EQ(x.size(), y.size()) << a << " vs " << b;
  for (const auto& item : x) {
    const torch::Tensor* other = y.find(item.key());
    ASSERT_NE(other, nullptr) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), *other)) << item.key() << " differs";
  }
}

/// Kills `tandem train SPEC` with SIGKILL as soon as its first checkpoint is
/// in `out`, then runs it again to the end (it resumes). With `epochs` > 0
/// also checks that the killed run had not finished and that the resumed run
/// did not train epoch 1 again.
inline void kill_after_first_checkpoint_then_resume(const std::filesystem::path& spec,
                                                    const std::filesystem::path& out,
                                                    const std::string& tag, int64_t epochs = 0) {
  auto child = spawn_tandem({"train", spec.string()}, tag + "-killed");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!std::filesystem::exists(out / "checkpoint.pt") &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(std::filesystem::exists(out / "checkpoint.pt"));
  ::kill(child.pid, SIGKILL);
  auto killed = wait_for(child);
  EXPECT_EQ(killed.exit_code, -1) << "killed by the signal, not finished: " << killed.out;
  const std::string of = "/" + std::to_string(epochs);
  if (epochs > 0) {
    EXPECT_EQ(killed.out.find("epoch " + std::to_string(epochs) + of), std::string::npos)
        << "finished before the kill";
  }
  auto resumed = run_tandem({"train", spec.string()}, tag + "-resumed");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_NE(resumed.out.find("resuming from"), std::string::npos) << resumed.out;
  if (epochs > 0) {
    EXPECT_EQ(resumed.out.find("epoch 1" + of), std::string::npos) << "epoch 1 ran again";
  }
}

}  // namespace tandem::cli::testing
