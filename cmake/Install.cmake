# `cmake --install` lays out what another project needs to use the client:
#   include/shmbroker/*.h, lib/libshmbroker.so, bin/{shmbrokerd,shmbroker},
#   lib/cmake/shmbroker (find_package(shmbroker CONFIG) -> shmbroker::shmbroker)
#   lib/pkgconfig/shmbroker.pc
# Each rule names the install component, and so the Debian package, it
# belongs to (cmake/Packaging.cmake): daemon, cli, lib (the shared library),
# dev (headers, the .so link, CMake and pkg-config files), python, bench.
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/client/include/shmbroker
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)
install(TARGETS shmbroker EXPORT shmbrokerTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          COMPONENT lib NAMELINK_COMPONENT dev
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT shmbrokerTargets NAMESPACE shmbroker::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/shmbroker COMPONENT dev)

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/shmbrokerConfig.cmake.in
  ${PROJECT_BINARY_DIR}/shmbrokerConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/shmbroker)
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/shmbrokerConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/shmbrokerConfig.cmake
              ${PROJECT_BINARY_DIR}/shmbrokerConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/shmbroker COMPONENT dev)

# The .pc file finds the prefix from where it lies: as many levels up from
# LIBDIR/pkgconfig as LIBDIR is deep (lib, or lib/x86_64-linux-gnu under
# /usr).
file(RELATIVE_PATH SHMBROKER_PC_TO_PREFIX
     /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" SHMBROKER_PC_TO_PREFIX "${SHMBROKER_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/shmbroker.pc.in
               ${PROJECT_BINARY_DIR}/shmbroker.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/shmbroker.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
