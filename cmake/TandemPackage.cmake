# The installable package: `cmake --install build --prefix P` gives
#   P/include/tandem/<component>/...       the headers each library lists
#                                          (HDRS of tandem_cc_library), at their
#                                          source path (tandem/<component>/...)
#   P/include/tandem/proto/...             generated protobuf headers
#   P/lib/libtandem_<component>.a          libraries
#   P/bin/tandem                           the binary users run (no LibTorch)
#   P/libexec/tandem/tandem-engine         every other subcommand, run by it
#   P/lib/cmake/Tandem/TandemConfig.cmake  exporting Tandem::methods, ...
include(CMakePackageConfigHelpers)

set(TANDEM_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/Tandem")
get_property(TANDEM_EXPORTED_COMPONENTS GLOBAL PROPERTY TANDEM_EXPORTED_COMPONENTS)

install(EXPORT TandemTargets
        NAMESPACE Tandem::
        FILE TandemTargets.cmake
        DESTINATION "${TANDEM_CMAKE_DIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/TandemConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/TandemConfig.cmake"
  INSTALL_DESTINATION "${TANDEM_CMAKE_DIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/TandemConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/TandemConfig.cmake"
              "${PROJECT_BINARY_DIR}/TandemConfigVersion.cmake"
        DESTINATION "${TANDEM_CMAKE_DIR}")
