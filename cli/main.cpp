#include <string>
#include <vector>

#include "tandem/cli/app.h"

int main(int argc, char** argv) {
  return tandem::cli::run(std::vector<std::string>(argv, argv + argc));
}
