// `tandem`: the front binary (client/front.h).
#include <string>
#include <vector>

#include "tandem/client/front.h"

int main(int argc, char** argv) {
  return tandem::client::run_front(std::vector<std::string>(argv, argv + argc));
}
