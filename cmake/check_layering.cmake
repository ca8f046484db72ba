# Checks one layer's #include lines against the dependency rule
# (docs/architecture.md, "Layers"): fails naming each file that includes
# what its layer must not.
#   cmake -DLAYER=core -DDIR=<dir> -P check_layering.cmake
# LAYER is core, common or client:
#   core    Abseil and libc only: no gRPC, Protobuf, Prometheus, spdlog,
#           nlohmann, fmt; of the project, only core/ and common/.
#   common  Abseil and libc only; of the project, only common/.
#   client  never core/ or server/ (the wire helpers in common/ are fine).
if(NOT DEFINED DIR OR NOT IS_DIRECTORY "${DIR}")
  message(FATAL_ERROR "DIR is not a directory: '${DIR}'")
endif()

set(libraries "grpc|grpcpp|grpc\\+\\+|google/protobuf|prometheus|spdlog|nlohmann|fmt")
set(project_dirs "core|common|server|client|proto|shmbroker|tests|bench")
if(LAYER STREQUAL "core")
  set(forbidden "^(${libraries})/|\\.pb\\.h$|^(server|client|proto|shmbroker|tests|bench)/")
elseif(LAYER STREQUAL "common")
  set(forbidden "^(${libraries})/|\\.pb\\.h$|^(core|server|client|proto|shmbroker|tests|bench)/")
elseif(LAYER STREQUAL "client")
  set(forbidden "^(core|server)/")
else()
  message(FATAL_ERROR "LAYER must be core, common or client, not '${LAYER}'")
endif()

file(GLOB_RECURSE files LIST_DIRECTORIES false "${DIR}/*.h" "${DIR}/*.cc")
list(LENGTH files count)
# An empty or wrong directory must not pass by scanning nothing.
if(count EQUAL 0)
  message(FATAL_ERROR "no .h or .cc files under ${DIR}")
endif()

set(violations "")
foreach(file IN LISTS files)
  # Only #include lines: whole files would split into list items at ';'.
  file(STRINGS "${file}" includes REGEX "^[ \t]*#[ \t]*include")
  foreach(line IN LISTS includes)
    if(line MATCHES "include[ \t]*[<\"]([^>\"]+)[>\"]")
      if(CMAKE_MATCH_1 MATCHES "${forbidden}")
        string(APPEND violations "\n  ${file}: ${line}")
      endif()
    endif()
  endforeach()
endforeach()

if(violations)
  message(FATAL_ERROR "${LAYER}/ breaks the dependency rule "
    "(docs/architecture.md, \"Layers\"):${violations}")
endif()
message(STATUS "checked ${count} files of ${LAYER}/ under ${DIR}: the rule holds")
