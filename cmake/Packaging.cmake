# Debian packages with CPack (docs/deployment.md, "Debian packages"):
#   cpack --config build/CPackConfig.cmake -B build/packages
# One package per install component (cmake/Install.cmake):
#   shmbroker-daemon   daemon + systemd unit   (component daemon)
#   shmbroker-cli      the shmbroker CLI        (cli)
#   libshmbroker0      libshmbroker.so.0        (lib)
#   libshmbroker-dev   headers, .so, CMake + pkg-config files (dev)
#   python3-shmbroker  the Python package       (python, if built)
# Library dependencies come from dpkg-shlibdeps (dpkg-dev); the ones it
# cannot see (our own library, python3, passwd, Abseil's headers) are
# listed below. The packages always install under /usr; a tree configured
# with -DCMAKE_INSTALL_PREFIX=/usr also gets Debian's own subdirectories
# (lib/<multiarch>, lib/python3/dist-packages), another prefix keeps its
# own (lib, lib/python3.X/dist-packages), which /usr's search paths cover.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME shmbroker)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# Each package's synopsis is the first line of its description below.
# CPackDeb puts CPACK_PACKAGE_DESCRIPTION_SUMMARY before it unless that is
# CPack's default text, which this is.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_NAME} built using CMake")
set(SHMBROKER_DEB_MAINTAINER
    "shmbroker maintainers <shmbroker@localhost>"
    CACHE STRING "Maintainer field of the Debian packages")
set(CPACK_PACKAGE_CONTACT "${SHMBROKER_DEB_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # NAME_VERSION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Our binaries need libshmbroker.so.0, which is in no installed package:
# dpkg-shlibdeps finds it in the build tree and leaves it to the explicit
# dependency on libshmbroker0 below.
get_target_property(_shmbroker_lib_dir shmbroker BINARY_DIR)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${_shmbroker_lib_dir})
# Components depending on each other get "PKG (= VERSION)".
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)

set(CPACK_COMPONENTS_ALL daemon cli lib dev)
if(SHMBROKER_PYTHON_BUILT)
  list(APPEND CPACK_COMPONENTS_ALL python)
endif()

# daemon: shmbrokerd and its unit, with the package's path in ExecStart.
# The unit is installed by the package only (EXCLUDE_FROM_ALL): a plain
# `cmake --install` into another prefix would get a unit pointing at /usr.
set(_unit_in ${PROJECT_SOURCE_DIR}/deploy/systemd/shmbrokerd.service)
set(_unit_out ${PROJECT_BINARY_DIR}/deb/shmbrokerd.service)
set(_daemon_path ${CPACK_PACKAGING_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/shmbrokerd)
file(READ ${_unit_in} _unit)
string(REPLACE "ExecStart=/usr/local/bin/shmbrokerd "
               "ExecStart=${_daemon_path} " _unit "${_unit}")
# Its manual install steps are what the package does instead.
string(REGEX REPLACE "# Install \\(see [^\n]*\n(#   [^\n]*\n)*#\n" "" _unit "${_unit}")
if(NOT _unit MATCHES "\nExecStart=${_daemon_path} ")
  message(FATAL_ERROR "${_unit_in}: no 'ExecStart=/usr/local/bin/shmbrokerd ' "
                      "line to point at ${_daemon_path}")
endif()
file(WRITE ${_unit_out}
  "# Installed by the Debian package shmbroker-daemon, which creates the user\n"
  "# and group and enables the unit (docs/deployment.md, \"Debian packages\").\n"
  "${_unit}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_unit_in})
install(FILES ${_unit_out} DESTINATION lib/systemd/system
        COMPONENT daemon EXCLUDE_FROM_ALL)

set(_scripts ${PROJECT_SOURCE_DIR}/deploy/deb)
set(CPACK_DEBIAN_DAEMON_PACKAGE_NAME shmbroker-daemon)
# Descriptions: the first line is the package's synopsis.
set(CPACK_COMPONENT_DAEMON_DESCRIPTION
  "host-local shared-memory broker daemon, with its systemd unit\n\
shmbrokerd brokers memfd and POSIX shared memory over gRPC on a Unix\n\
socket. The package creates the system user shmbroker and enables\n\
shmbrokerd.service.")
# groupadd and useradd, for the postinst.
set(CPACK_DEBIAN_DAEMON_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_DAEMON_PACKAGE_CONTROL_EXTRA
    ${_scripts}/daemon/postinst ${_scripts}/daemon/prerm ${_scripts}/daemon/postrm)
set(CPACK_DEBIAN_DAEMON_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_DAEMON_PACKAGE_SUGGESTS shmbroker-cli)

set(CPACK_DEBIAN_CLI_PACKAGE_NAME shmbroker-cli)
set(CPACK_COMPONENT_CLI_DESCRIPTION
  "command-line client of shmbrokerd\n\
shmbroker allocates, fills, reads, lists and releases shared-memory\n\
buffers.")
set(CPACK_COMPONENT_CLI_DEPENDS lib)

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libshmbroker${PROJECT_VERSION_MAJOR})
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_COMPONENT_LIB_DESCRIPTION
  "C++ client library of shmbrokerd\n\
The shared library libshmbroker.so.${PROJECT_VERSION_MAJOR}.")
# A shlibs file, for packages built against it with dpkg-shlibdeps. (CPack
# then warns that the Python module has no soname: it needs none.)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libshmbroker-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DESCRIPTION
  "C++ client library of shmbrokerd (development files)\n\
Headers, find_package(shmbroker CONFIG) and pkg-config files.")
set(CPACK_COMPONENT_DEV_DEPENDS lib)
# The public headers use Abseil (absl::Status, absl::Time).
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libabsl-dev")

if(SHMBROKER_PYTHON_BUILT)
  set(CPACK_DEBIAN_PYTHON_PACKAGE_NAME python3-shmbroker)
  set(CPACK_DEBIAN_PYTHON_PACKAGE_SECTION python)
  set(CPACK_COMPONENT_PYTHON_DESCRIPTION
    "Python client of shmbrokerd\n\
The shmbroker package for /usr/bin/python3: buffers of shared memory\n\
seen by numpy and torch without a copy, pickled by reference.")
  set(CPACK_COMPONENT_PYTHON_DEPENDS lib)
  # The extension module is built for this one Python version.
  string(REPLACE "." ";" _py "${SHMBROKER_PYTHON_VERSION}")
  list(GET _py 0 _py_major)
  list(GET _py 1 _py_minor)
  math(EXPR _py_next "${_py_minor} + 1")
  set(CPACK_DEBIAN_PYTHON_PACKAGE_DEPENDS
      "python3 (>= ${_py_major}.${_py_minor}~), python3 (<< ${_py_major}.${_py_next})")
  set(CPACK_DEBIAN_PYTHON_PACKAGE_RECOMMENDS python3-numpy)
  set(CPACK_DEBIAN_PYTHON_PACKAGE_SUGGESTS python3-torch)
  set(CPACK_DEBIAN_PYTHON_PACKAGE_CONTROL_EXTRA
      ${_scripts}/python/postinst ${_scripts}/python/prerm)
  set(CPACK_DEBIAN_PYTHON_PACKAGE_CONTROL_STRICT_PERMISSION ON)
endif()

include(CPack)
