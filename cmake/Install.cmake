# `cmake --install` lays out what another project needs to use the client:
#   include/shmbroker/*.h, lib/libshmbroker.so, bin/{shmbrokerd,shmbroker},
#   lib/cmake/shmbroker (find_package(shmbroker CONFIG) -> shmbroker::shmbroker)
#   lib/pkgconfig/shmbroker.pc
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/client/include/shmbroker
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS shmbroker EXPORT shmbrokerTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT shmbrokerTargets NAMESPACE shmbroker::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/shmbroker)

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/shmbrokerConfig.cmake.in
  ${PROJECT_BINARY_DIR}/shmbrokerConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/shmbroker)
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/shmbrokerConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/shmbrokerConfig.cmake
              ${PROJECT_BINARY_DIR}/shmbrokerConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/shmbroker)

configure_file(${PROJECT_SOURCE_DIR}/cmake/shmbroker.pc.in
               ${PROJECT_BINARY_DIR}/shmbroker.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/shmbroker.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
