// Translation unit that carries the shared precompiled <torch/torch.h> of
// libraries (see tandem_use_torch_pch in cmake/TandemHelpers.cmake).
