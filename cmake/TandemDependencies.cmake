# Finds every dependency with find_package. The same list, as find_dependency
# calls, is in cmake/TandemConfig.cmake.in for users of the installed package.

# --- LibTorch (Debian's libtorch-dev 1.13, or a CUDA PyTorch's on GPU hosts) --
find_package(Torch REQUIRED)
if(TARGET torch_cuda OR TARGET c10_cuda)
  set(TANDEM_WITH_CUDA ON)
else()
  set(TANDEM_WITH_CUDA OFF)
endif()
message(STATUS "LibTorch ${Torch_VERSION} found at ${TORCH_INSTALL_PREFIX} (CUDA: ${TANDEM_WITH_CUDA})")

# c10d's Gloo process group is compiled into libtorch_cpu but its header needs
# USE_C10D_GLOO and Gloo's own headers. Debian ships them in libgloo-dev; a
# PyTorch wheel ships them in its include/ folder.
find_package(Gloo CONFIG QUIET)
add_library(tandem_c10d INTERFACE)
target_link_libraries(tandem_c10d INTERFACE torch)
target_compile_definitions(tandem_c10d INTERFACE USE_C10D_GLOO)
if(TANDEM_WITH_CUDA)
  # ProcessGroupNCCL.hpp includes <nccl.h>: a CUDA toolkit has it, a pip
  # wheel keeps it under site-packages/nvidia/nccl/include.
  file(GLOB _tandem_wheel_nccl "${TORCH_INSTALL_PREFIX}/../nvidia/nccl/include"
                               "${TORCH_INSTALL_PREFIX}/../../nvidia/nccl/include")
  find_path(TANDEM_NCCL_INCLUDE_DIR nccl.h
            HINTS ${_tandem_wheel_nccl} ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  if(NOT TANDEM_NCCL_INCLUDE_DIR)
    message(FATAL_ERROR "CUDA LibTorch found but not nccl.h: set TANDEM_NCCL_INCLUDE_DIR")
  endif()
  target_compile_definitions(tandem_c10d INTERFACE USE_C10D_NCCL)
  target_include_directories(tandem_c10d INTERFACE $<BUILD_INTERFACE:${TANDEM_NCCL_INCLUDE_DIR}>)
endif()
set_target_properties(tandem_c10d PROPERTIES EXPORT_NAME c10d)
add_library(tandem::c10d ALIAS tandem_c10d)
install(TARGETS tandem_c10d EXPORT TandemTargets)
if(TARGET gloo)
  set(TANDEM_GLOO_PACKAGE ON)   # the installed package needs it found again
  target_link_libraries(tandem_c10d INTERFACE gloo)
else()
  set(TANDEM_GLOO_PACKAGE OFF)  # headers inside the PyTorch wheel
endif()
if(NOT TARGET gloo AND NOT EXISTS "${TORCH_INSTALL_PREFIX}/include/gloo/config.h")
  message(FATAL_ERROR "Gloo headers not found: install libgloo-dev (scripts/setup does)")
endif()

if(NOT TANDEM_CORE_ONLY)
  # --- gRPC and protobuf -----------------------------------------------------
  find_package(Protobuf REQUIRED)
  find_package(gRPC CONFIG REQUIRED)
  find_program(TANDEM_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

  # --- FAISS: its package expects OpenMP, BLAS and LAPACK to be found first --
  find_package(OpenMP REQUIRED)
  find_package(BLAS REQUIRED)
  find_package(LAPACK REQUIRED)
  find_package(faiss CONFIG REQUIRED)

  # --- Boost (Asio, Beast: header-only) and SQLite -----------------------------
  find_package(absl CONFIG REQUIRED)   # Status/StatusOr of the service code
  find_package(Boost 1.74 REQUIRED)
  find_package(SQLite3 REQUIRED)
endif()

# --- Image codecs of the data pipeline: libjpeg-turbo (TurboJPEG API), libpng,
# zlib (also the gzip of Fashion-MNIST). Required in the full build; a
# core-only build on a bare GPU host may lack them, and then image decoding
# fails with a clear error at run time instead of at configure time.
find_path(TANDEM_TURBOJPEG_INCLUDE_DIR turbojpeg.h)
find_library(TANDEM_TURBOJPEG_LIBRARY turbojpeg)
find_package(PNG QUIET)
find_package(ZLIB QUIET)
add_library(tandem_image_codecs INTERFACE)
set_target_properties(tandem_image_codecs PROPERTIES EXPORT_NAME image_codecs)
add_library(tandem::image_codecs ALIAS tandem_image_codecs)
install(TARGETS tandem_image_codecs EXPORT TandemTargets)
if(TANDEM_TURBOJPEG_INCLUDE_DIR AND TANDEM_TURBOJPEG_LIBRARY AND PNG_FOUND AND ZLIB_FOUND)
  set(TANDEM_WITH_IMAGE_CODECS ON)
  target_include_directories(tandem_image_codecs INTERFACE
    $<BUILD_INTERFACE:${TANDEM_TURBOJPEG_INCLUDE_DIR}>)
  target_link_libraries(tandem_image_codecs INTERFACE ${TANDEM_TURBOJPEG_LIBRARY} PNG::PNG ZLIB::ZLIB)
elseif(TANDEM_CORE_ONLY)
  set(TANDEM_WITH_IMAGE_CODECS OFF)
  message(WARNING "libjpeg-turbo, libpng or zlib not found: images cannot be decoded in this build")
else()
  message(FATAL_ERROR "libjpeg-turbo (libturbojpeg0-dev), libpng (libpng-dev) or zlib (zlib1g-dev) "
                      "not found: scripts/setup installs them")
endif()

# --- Libraries of the full build -----------------------------------------------
find_package(Threads REQUIRED)
if(NOT TANDEM_CORE_ONLY)
  find_package(CLI11 CONFIG REQUIRED)
  find_package(yaml-cpp CONFIG REQUIRED)
  find_package(nlohmann_json CONFIG REQUIRED)
endif()

# --- Test and benchmark frameworks ---------------------------------------------
# A core-only build on a GPU host may have nothing but a CUDA PyTorch: there the
# frameworks are optional and their targets are skipped with a message.
if(TANDEM_BUILD_TESTS)
  if(TANDEM_CORE_ONLY)
    find_package(GTest CONFIG QUIET)
  else()
    find_package(GTest CONFIG REQUIRED)
  endif()
  if(TARGET GTest::gtest_main)
    include(GoogleTest)
  else()
    message(WARNING "GoogleTest not found: tests are not built")
    set(TANDEM_BUILD_TESTS OFF)
  endif()
endif()
if(TANDEM_BUILD_BENCH)
  if(TANDEM_CORE_ONLY)
    find_package(benchmark CONFIG QUIET)
  else()
    find_package(benchmark CONFIG REQUIRED)
  endif()
  if(NOT TARGET benchmark::benchmark)
    message(WARNING "Google Benchmark not found: benchmarks are not built")
    set(TANDEM_BUILD_BENCH OFF)
  endif()
endif()
