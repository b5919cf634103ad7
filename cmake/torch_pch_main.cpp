// Translation unit that carries the shared precompiled <torch/torch.h> of
// executables (see tandem_use_torch_pch in cmake/TandemHelpers.cmake).
int main() {
  return 0;
}
