// Pieces of `tandem worker` (cli/worker_command.cpp) that tests reach.
#pragma once

#include <string>
#include <vector>

namespace tandem::cli {

/// Of one read's new lines of a job's event log (events.jsonl), those worth
/// a message to the server: every line but iteration summaries, of which
/// only the last of a run of consecutive ones and each epoch's last (so that
/// progress bars end full) are kept, in order. The worker reads the log every
/// 250 ms, so the server gets at most ~4 iteration summaries a second however
/// fast a rank trains.
std::vector<std::string> coalesce_iterations(std::vector<std::string> lines);

}  // namespace tandem::cli
