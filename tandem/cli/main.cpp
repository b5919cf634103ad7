// `tandem-engine`: every subcommand (cli/app.h); users run it through `tandem`.
#include <string>
#include <vector>

#include "tandem/cli/app.h"

int main(int argc, char** argv) {
  return tandem::cli::run(std::vector<std::string>(argv, argv + argc));
}
