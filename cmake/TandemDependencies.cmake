# Finds every dependency with find_package. The same list, as find_dependency
# calls, is in cmake/TandemConfig.cmake.in for users of the installed package.

# --- gRPC and protobuf: before LibTorch --------------------------------------
# Torch's Caffe2Config.cmake defines protobuf::libprotobuf as an alias of an
# empty "dummy" target when no such target exists yet, which would leave the
# generated code unlinked (and the export set broken): Debian's protobuf is
# found first so that its real target is the one that exists.
if(NOT TANDEM_CORE_ONLY)
  find_package(Protobuf REQUIRED)
  find_package(gRPC CONFIG REQUIRED)
  find_program(TANDEM_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
endif()

# --- LibTorch: the one inside the project's PyTorch wheel ----------------------
# scripts/setup installs the torch wheel that scripts/python-requirements.txt
# pins into the project's venv (.venv, or $TANDEM_VENV); its LibTorch is the
# only one the build uses. Another LibTorch (a pytorch.org zip, a GPU host's
# PyTorch) is taken instead when Torch_DIR or CMAKE_PREFIX_PATH points at it
# (docs/building.md).
if(DEFINED ENV{TANDEM_VENV} AND NOT "$ENV{TANDEM_VENV}" STREQUAL "")
  set(_tandem_default_python "$ENV{TANDEM_VENV}/bin/python")
else()
  set(_tandem_default_python "${PROJECT_SOURCE_DIR}/.venv/bin/python")
endif()
set(TANDEM_PYTHON "${_tandem_default_python}" CACHE FILEPATH
    "Python of the project's venv: its torch wheel's LibTorch is linked, and tests run golden comparisons with it")
file(STRINGS "${PROJECT_SOURCE_DIR}/scripts/python-requirements.txt" _tandem_torch_pin
     REGEX "^torch==")
string(REGEX REPLACE "^torch==" "" TANDEM_PINNED_TORCH_VERSION "${_tandem_torch_pin}")
if(NOT Torch_DIR AND EXISTS "${TANDEM_PYTHON}")
  # Where the wheel keeps its CMake package, without importing torch (that
  # would load the CUDA libraries just to print a path).
  execute_process(
    COMMAND "${TANDEM_PYTHON}" -c
            "import importlib.util as u; s = u.find_spec('torch'); print(s.submodule_search_locations[0] if s else '')"
    OUTPUT_VARIABLE _tandem_torch_package OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _tandem_python_rc)
  if(_tandem_python_rc EQUAL 0 AND EXISTS "${_tandem_torch_package}/share/cmake/Torch")
    list(APPEND CMAKE_PREFIX_PATH "${_tandem_torch_package}/share/cmake")
  endif()
endif()
# The CUDA toolkit Torch's package asks for (it enables the CUDA language):
# the venv's, from the same PyPI release as the wheel's CUDA libraries
# (scripts/python-requirements.txt), unless one is named explicitly. Nothing
# of ours is compiled by nvcc; a system toolkit (/usr/local/cuda) is used
# only where the venv has none.
if(_tandem_torch_package AND NOT CUDAToolkit_ROOT AND NOT CMAKE_CUDA_COMPILER
   AND EXISTS "${_tandem_torch_package}/../nvidia/cu13/bin/nvcc")
  get_filename_component(_tandem_venv_cuda "${_tandem_torch_package}/../nvidia/cu13" ABSOLUTE)
  set(CUDAToolkit_ROOT "${_tandem_venv_cuda}" CACHE PATH "CUDA toolkit (the venv's)")
  set(CUDA_TOOLKIT_ROOT_DIR "${_tandem_venv_cuda}" CACHE PATH "CUDA toolkit (the venv's)")
  set(CMAKE_CUDA_COMPILER "${_tandem_venv_cuda}/bin/nvcc" CACHE FILEPATH "nvcc (the venv's)")
endif()
find_package(Torch CONFIG)
if(NOT Torch_FOUND)
  message(FATAL_ERROR
    "LibTorch not found. scripts/setup installs the pinned torch wheel into ${TANDEM_PYTHON}'s venv; "
    "or point -DTorch_DIR=<libtorch>/share/cmake/Torch at another LibTorch 2.x (docs/building.md)")
endif()
if(Torch_VERSION VERSION_LESS 2.0)
  message(FATAL_ERROR "LibTorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX} is not supported: "
                      "Tandem needs LibTorch 2.x (pinned: ${TANDEM_PINNED_TORCH_VERSION})")
endif()
string(REGEX MATCH "^[0-9]+\\.[0-9]+" _tandem_found_minor "${Torch_VERSION}")
string(REGEX MATCH "^[0-9]+\\.[0-9]+" _tandem_pinned_minor "${TANDEM_PINNED_TORCH_VERSION}")
if(NOT _tandem_found_minor VERSION_EQUAL _tandem_pinned_minor)
  message(WARNING "LibTorch ${Torch_VERSION} found, the project pins ${TANDEM_PINNED_TORCH_VERSION} "
                  "(scripts/python-requirements.txt): only the pinned release is tested")
endif()
if(TARGET torch_cuda OR TARGET c10_cuda)
  set(TANDEM_WITH_CUDA ON)
else()
  set(TANDEM_WITH_CUDA OFF)
endif()
message(STATUS "LibTorch ${Torch_VERSION} found at ${TORCH_INSTALL_PREFIX} (CUDA: ${TANDEM_WITH_CUDA})")
# Installed programs find LibTorch (and, through its RPATH, the wheel's CUDA
# libraries) where the build found it: the wheel is not copied into the
# install prefix.
list(APPEND CMAKE_INSTALL_RPATH "${TORCH_INSTALL_PREFIX}/lib")
# Torch's caffe2::mkl target lists MKL link folders under an empty MKL_ROOT
# (/lib/intel64, /lib/win-x64, ...), which would end up in every program's
# RUNPATH; the wheel links MKL statically into libtorch_cpu, so none is needed.
if(TARGET caffe2::mkl)
  set_property(TARGET caffe2::mkl PROPERTY INTERFACE_LINK_DIRECTORIES "")
endif()

# tandem::libtorch, what Tandem's targets link instead of `torch`: the wheel's
# libtorch.so and libtorch_cpu.so export pieces of a newer libstdc++ that the
# wheel's toolchain linked statically (std::filesystem, std::chrono's tzdb,
# ...; pytorch/pytorch#133437). The dynamic loader binds each symbol to the
# first library in load order that defines it, and LibTorch comes before
# libstdc++.so.6 in a program's needed list, so our own std::filesystem calls
# landed in the wheel's copies and crashed (remove_all jumped to address 0).
# Naming libstdc++ first on the link line makes the system library the first
# definition of every std:: symbol (ABI-compatible: both are the C++11 ABI);
# symbols only the wheel's newer copy has are still found there.
add_library(tandem_libtorch INTERFACE)
target_link_libraries(tandem_libtorch INTERFACE torch)
target_link_options(tandem_libtorch INTERFACE "LINKER:--push-state,--no-as-needed,-lstdc++,--pop-state")
set_target_properties(tandem_libtorch PROPERTIES EXPORT_NAME libtorch)
add_library(tandem::libtorch ALIAS tandem_libtorch)
install(TARGETS tandem_libtorch EXPORT TandemTargets)

# The wheel's include/ carries its own protobuf 3.13 headers (for ONNX). Torch's
# include folders reach our targets as -isystem, so a file that includes both
# torch and gRPC would see protobuf 3.13's headers before Debian's 3.21 in
# /usr/include and fail, or worse, compile against the wrong message layout.
# tandem_proto puts a folder holding only a link to Debian's google/ on the
# -I path, which GCC searches before every -isystem folder (proto/CMakeLists.txt).
set(TANDEM_PROTOBUF_INCLUDE_SHIM "${PROJECT_BINARY_DIR}/protobuf-include")
if(NOT TANDEM_CORE_ONLY)
  file(MAKE_DIRECTORY "${TANDEM_PROTOBUF_INCLUDE_SHIM}")
endif()

# c10d: ProcessGroupGloo is compiled into libtorch_cpu, but its header includes
# five Gloo headers that no PyTorch wheel ships. Debian's libgloo-dev gives
# them; one source file (worker/distributed.cpp) includes them, privately.
# Every Gloo type inside ProcessGroupGloo is held through a pointer, so the
# class layout does not depend on the Gloo version of those headers (see
# docs/building.md, "Known traps").
find_path(TANDEM_GLOO_INCLUDE_DIR gloo/rendezvous/store.h
          HINTS "${TORCH_INSTALL_PREFIX}/include")
add_library(tandem_c10d INTERFACE)
target_link_libraries(tandem_c10d INTERFACE tandem_libtorch)
set_target_properties(tandem_c10d PROPERTIES EXPORT_NAME c10d)
add_library(tandem::c10d ALIAS tandem_c10d)
install(TARGETS tandem_c10d EXPORT TandemTargets)
if(TANDEM_GLOO_INCLUDE_DIR)
  set(TANDEM_WITH_GLOO ON)
elseif(TANDEM_CORE_ONLY)
  set(TANDEM_WITH_GLOO OFF)
  message(WARNING "Gloo headers not found (libgloo-dev, or -DTANDEM_GLOO_INCLUDE_DIR=...): "
                  "this build has no CPU process group (NCCL only)")
else()
  message(FATAL_ERROR "Gloo headers not found: install libgloo-dev (scripts/setup does) "
                      "or set -DTANDEM_GLOO_INCLUDE_DIR")
endif()
if(TANDEM_WITH_CUDA)
  # ProcessGroupNCCL.hpp includes <nccl.h>: the wheel keeps it under
  # site-packages/nvidia/nccl/include (the same NCCL libtorch_cuda loads); a
  # CUDA toolkit has one too.
  find_path(TANDEM_NCCL_INCLUDE_DIR nccl.h
            HINTS "${TORCH_INSTALL_PREFIX}/../nvidia/nccl/include"
                  ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  if(NOT TANDEM_NCCL_INCLUDE_DIR)
    message(FATAL_ERROR "CUDA LibTorch found but not nccl.h: set TANDEM_NCCL_INCLUDE_DIR")
  endif()
endif()

# FAISS: required in the full build; a core-only build has none (its
# clustering core uses LibTorch's exact searches; k-means and the IVF search
# throw a c10::Error there, clustering/CMakeLists.txt).
set(TANDEM_WITH_FAISS OFF)
if(NOT TANDEM_CORE_ONLY)
  # --- FAISS: its package expects OpenMP, BLAS and LAPACK to be found first --
  # One OpenMP runtime per process: libtorch_cpu needs the wheel's
  # torch/lib/libgomp.so.1 and Debian's FAISS (a static library built with
  # GCC 12's -fopenmp) needs a libgomp.so.1 too. Both have the same soname, so
  # the loader keeps whichever comes first; linking FAISS's OpenMP against the
  # wheel's copy makes that one copy deterministic, the wheel's (the link fails
  # if FAISS ever needs a symbol version that copy lacks).
  if(EXISTS "${TORCH_INSTALL_PREFIX}/lib/libgomp.so.1")
    set(OpenMP_gomp_LIBRARY "${TORCH_INSTALL_PREFIX}/lib/libgomp.so.1" CACHE FILEPATH
        "libgomp: the one inside the torch wheel (one OpenMP runtime per process)" FORCE)
  endif()
  find_package(OpenMP REQUIRED)
  find_package(BLAS REQUIRED)
  find_package(LAPACK REQUIRED)
  find_package(faiss CONFIG REQUIRED)
  set(TANDEM_WITH_FAISS ON)

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
  find_package(spdlog CONFIG REQUIRED)  # the processes' log (rpc/log.h)
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
