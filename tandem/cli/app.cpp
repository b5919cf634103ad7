#include "tandem/cli/app.h"

#include <c10/util/Exception.h>
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

namespace tandem::cli {

const char* version() {
  return TANDEM_VERSION;
}

int run(const std::vector<std::string>& args) {
  CLI::App app{
      "Tandem: adapts person re-identification models to an unlabelled camera network "
      "with Mutual Mean-Teaching, and serves rankings from the adapted model.",
      "tandem"};
  app.set_version_flag("--version", std::string("tandem ") + version());
  app.require_subcommand(1);
  app.fallthrough(false);

  Action action;
  add_server_command(app, action);
  add_cluster_command(app, action);
  add_dataset_command(app, action);
  add_train_command(app, action);
  add_bench_command(app, action);
  add_synth_command(app, action);
  add_worker_command(app, action);
  client::add_client_commands(app, action);
  client::add_health_command(app, action);
  add_demo_command(app, action);

  const auto is_subcommand = [&app](const std::string& name) {
    for (const CLI::App* sub : app.get_subcommands({})) {
      if (sub->check_name(name)) return true;
    }
    return false;
  };
  if (args.size() > 1 && !args[1].empty() && args[1][0] != '-' && !is_subcommand(args[1])) {
    std::cerr << "tandem: unknown subcommand '" << args[1] << "'\n\n" << app.help();
    return kExitUsage;
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  if (!reversed.empty()) reversed.pop_back();  // program name
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& error) {
    if (error.get_exit_code() == 0) return app.exit(error);  // --help, --version
    std::cerr << "tandem: " << error.what() << "\n\n" << app.help();
    return kExitUsage;
  }
  if (!action) {
    std::cerr << app.help();
    return kExitUsage;
  }
  try {
    return action();
  } catch (const c10::Error& error) {
    std::cerr << "tandem: " << error.what_without_backtrace() << "\n";
    return kExitFailure;
  } catch (const std::exception& error) {
    std::cerr << "tandem: " << error.what() << "\n";
    return kExitFailure;
  }
}

}  // namespace tandem::cli
