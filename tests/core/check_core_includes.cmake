# Fails when a file under CORE_DIR includes a gRPC, Protobuf or Prometheus
# header (or generated .pb.h code). Run: cmake -DCORE_DIR=<dir> -P <this file>.
if(NOT DEFINED CORE_DIR OR NOT IS_DIRECTORY "${CORE_DIR}")
  message(FATAL_ERROR "CORE_DIR is not a directory: '${CORE_DIR}'")
endif()

set(forbidden
  "^[ \t]*#[ \t]*include[ \t]*[<\"](grpc|grpcpp|grpc\\+\\+|google/protobuf|prometheus)/"
)
set(generated "^[ \t]*#[ \t]*include[ \t]*[<\"][^>\"]*\\.pb\\.h[>\"]")

file(GLOB_RECURSE files LIST_DIRECTORIES false "${CORE_DIR}/*")
list(LENGTH files count)
# An empty or wrong directory must not pass by scanning nothing.
if(count EQUAL 0)
  message(FATAL_ERROR "no files under ${CORE_DIR}")
endif()

set(violations "")
foreach(file IN LISTS files)
  # Only #include lines: whole files would split into list items at ';'.
  file(STRINGS "${file}" includes REGEX "^[ \t]*#[ \t]*include")
  foreach(line IN LISTS includes)
    if(line MATCHES "${forbidden}" OR line MATCHES "${generated}")
      string(APPEND violations "\n  ${file}: ${line}")
    endif()
  endforeach()
endforeach()

if(violations)
  message(FATAL_ERROR
    "core/ must depend on Abseil and libc only (DESIGN.md), but:${violations}")
endif()
message(STATUS "checked ${count} files under ${CORE_DIR}: no transport headers")
