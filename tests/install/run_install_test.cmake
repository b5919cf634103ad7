# Installs the built tree into a fresh prefix, then configures, builds and
# runs tests/install/consumer (an outside LibTorch program that does
# find_package(Tandem) and #include <tandem/methods/...>) against it.
# Inputs: TANDEM_BUILD_DIR, TANDEM_SOURCE_DIR, CONSUMER_GENERATOR.
set(work "${TANDEM_BUILD_DIR}/install-test")
file(REMOVE_RECURSE "${work}")
set(prefix "${work}/prefix")

function(run_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install test: ${name} failed (${rc})\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

run_step("cmake --install" ${CMAKE_COMMAND} --install "${TANDEM_BUILD_DIR}" --prefix "${prefix}")

foreach(expected
    "include/tandem/methods/reid_loss.h"
    "include/tandem/methods/mcc.h"
    "include/tandem/methods/models/resnet.h"
    "include/tandem/clustering/kmeans.h"
    "include/tandem/worker/distributed.h"
    "lib/cmake/Tandem/TandemConfig.cmake"
    "lib/cmake/Tandem/TandemTargets.cmake"
    "bin/tandem"
    "libexec/tandem/tandem-engine")
  if(NOT EXISTS "${prefix}/${expected}")
    message(FATAL_ERROR "install test: ${expected} is missing from the install")
  endif()
endforeach()

run_step("configure consumer" ${CMAKE_COMMAND}
         -S "${TANDEM_SOURCE_DIR}/tests/install/consumer" -B "${work}/consumer"
         -G "${CONSUMER_GENERATOR}" -DCMAKE_BUILD_TYPE=Release
         "-DCMAKE_PREFIX_PATH=${prefix}")
run_step("build consumer" ${CMAKE_COMMAND} --build "${work}/consumer")
run_step("run consumer" "${work}/consumer/tandem_consumer")
if(NOT step_output MATCHES "consumer ok")
  message(FATAL_ERROR "install test: consumer printed:\n${step_output}")
endif()
# The front binary finds the engine in libexec/ (client/front.h).
run_step("run installed tandem" "${prefix}/bin/tandem" --version)
message(STATUS "install test passed: ${step_output}")
file(REMOVE_RECURSE "${work}")
