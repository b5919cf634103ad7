# tandem_cc_library / tandem_cc_test / tandem_cc_binary: the only way targets
# are declared, so that warnings, include paths, precompiled headers and
# install rules are set once, per target, never as global flags.

# Warnings for our own code only; -Werror when the CI variable is set.
# TANDEM_WITH_CUDA is defined for every target of a CUDA build.
function(tandem_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(TANDEM_WITH_CUDA)
    target_compile_definitions(${target} PRIVATE TANDEM_WITH_CUDA)
  endif()
  if(DEFINED ENV{CI} AND NOT "$ENV{CI}" STREQUAL "" AND NOT "$ENV{CI}" STREQUAL "0")
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# One precompiled <torch/torch.h> per kind of target, reused by every
# torch-heavy target (REUSE_FROM): two PCH compiles in all instead of one per
# target. GCC accepts a PCH only when code-generation flags and predefined
# macros match, so libraries (-fPIC) and executables (-fPIE) each have their
# carrier, and carriers and users all compile with -pthread (gRPC's targets
# add it, so every target must agree).
function(tandem_use_torch_pch target)
  if(NOT TANDEM_USE_PCH)
    return()
  endif()
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    set(carrier tandem_torch_pch_executable)
    if(NOT TARGET ${carrier})
      add_executable(${carrier} "${PROJECT_SOURCE_DIR}/cmake/torch_pch_main.cpp")
    endif()
  else()
    set(carrier tandem_torch_pch_library)
    if(NOT TARGET ${carrier})
      add_library(${carrier} OBJECT "${PROJECT_SOURCE_DIR}/cmake/torch_pch.cpp")
    endif()
  endif()
  get_target_property(carrier_pch ${carrier} PRECOMPILE_HEADERS)
  if(NOT carrier_pch)
    target_link_libraries(${carrier} PRIVATE tandem_libtorch)
    target_compile_options(${carrier} PRIVATE -pthread)
    target_precompile_headers(${carrier} PRIVATE <torch/torch.h>)
  endif()
  # A PCH GCC silently ignores only costs time; -Winvalid-pch (an error in
  # CI) reports it.
  target_compile_options(${target} PRIVATE -pthread -Winvalid-pch)
  target_precompile_headers(${target} REUSE_FROM ${carrier})
endfunction()

# tandem_cc_library(NAME methods SRCS a.cpp HDRS a.h DEPS torch
#                   [PRIVATE_DEPS ...] [TORCH_PCH] [NO_INSTALL]
#                   [OTHER_HDRS b.h])
# Declares target tandem_<NAME>, alias tandem::<NAME>, exported as
# Tandem::<NAME>. The headers named in HDRS (paths relative to the calling
# folder, tandem/<folder>/) install under include/tandem/<folder>/, keeping
# sub-folders; a header of the folder that HDRS leaves out stops the
# configure step, so that no public header is forgotten (and none is
# installed by a glob); OTHER_HDRS names the folder's headers that this
# configuration does not build (the clustering service in a core-only build).
function(tandem_cc_library)
  cmake_parse_arguments(ARG "TORCH_PCH;NO_INSTALL" "NAME" "SRCS;HDRS;OTHER_HDRS;DEPS;PRIVATE_DEPS" ${ARGN})
  set(target tandem_${ARG_NAME})
  add_library(${target} ${ARG_SRCS} ${ARG_HDRS})
  add_library(tandem::${ARG_NAME} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${ARG_NAME}
                                             POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${TANDEM_INCLUDE_ROOT}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${target} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  tandem_set_warnings(${target})
  if(ARG_TORCH_PCH)
    tandem_use_torch_pch(${target})
  endif()
  file(GLOB_RECURSE present RELATIVE "${CMAKE_CURRENT_SOURCE_DIR}" CONFIGURE_DEPENDS
       "${CMAKE_CURRENT_SOURCE_DIR}/*.h")
  foreach(header IN LISTS present)
    if(NOT header IN_LIST ARG_HDRS AND NOT header IN_LIST ARG_OTHER_HDRS)
      message(FATAL_ERROR "${CMAKE_CURRENT_SOURCE_DIR}/${header}: not in HDRS of tandem_${ARG_NAME}")
    endif()
  endforeach()
  if(NOT ARG_NO_INSTALL)
    file(RELATIVE_PATH folder "${TANDEM_INCLUDE_ROOT}" "${CMAKE_CURRENT_SOURCE_DIR}")
    install(TARGETS ${target} EXPORT TandemTargets
            ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
            LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
    foreach(header IN LISTS ARG_HDRS)
      get_filename_component(subfolder "${header}" DIRECTORY)
      install(FILES "${header}" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/${folder}/${subfolder}")
    endforeach()
    set_property(GLOBAL APPEND PROPERTY TANDEM_EXPORTED_COMPONENTS ${ARG_NAME})
  endif()
endfunction()

# tandem_cc_test(NAME methods_test SRCS a_test.cpp DEPS tandem::methods
#                [TORCH_PCH] [LABELS ...])
# One GoogleTest binary per component; each TEST is its own CTest test.
# A test whose name ends in _CUDA (TEST(Suite, Name_CUDA), or Name_CUDA/<n>
# when parameterised) also carries the label `cuda`: `ctest -L cuda` runs
# exactly the GPU tests, `ctest -LE cuda` the rest.
function(tandem_cc_test)
  cmake_parse_arguments(ARG "TORCH_PCH" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${ARG_NAME} PRIVATE
    TANDEM_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    TANDEM_BINARY_DIR="${PROJECT_BINARY_DIR}")
  tandem_set_warnings(${ARG_NAME})
  if(ARG_TORCH_PCH)
    tandem_use_torch_pch(${ARG_NAME})
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  gtest_discover_tests(${ARG_NAME}
    DISCOVERY_TIMEOUT 60
    TEST_LIST ${ARG_NAME}_TESTS
    PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
  # Discovery runs at build time and leaves the names in ${ARG_NAME}_TESTS
  # for the include files CTest reads after its own: this one adds the label
  # `cuda` to the _CUDA tests (each binary still runs once to list its tests).
  set(cuda_labels ${ARG_LABELS} cuda)
  set(label_file "${CMAKE_CURRENT_BINARY_DIR}/${ARG_NAME}_cuda_labels.cmake")
  configure_file("${PROJECT_SOURCE_DIR}/cmake/TandemCudaLabels.cmake.in" "${label_file}" @ONLY)
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${label_file}")
endfunction()

# tandem_cc_binary(NAME tandem SRCS main.cpp DEPS ...)
function(tandem_cc_binary)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS})
  tandem_set_warnings(${ARG_NAME})
endfunction()
