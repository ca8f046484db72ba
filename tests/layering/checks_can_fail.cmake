# Proves each layering check can fail: for every layer, plants a file with
# an include the layer must not have in a scratch directory, runs
# check_layering.cmake on it, and fails unless the check fails naming that
# file. Also checks that a clean file passes, so the check is not simply
# failing on everything.
#   cmake -DCHECK=<check_layering.cmake> -DSCRATCH=<dir> -P this file
set(cases
  "core|#include \"grpcpp/grpcpp.h\""
  "core|#include <spdlog/spdlog.h>"
  "core|#include \"nlohmann/json.hpp\""
  "core|#include \"server/metrics.h\""
  "core|#include \"shmbroker/v1/broker.pb.h\""
  "common|#include \"core/registry.h\""
  "common|#include <prometheus/counter.h>"
  "client|#include \"core/registry.h\""
  "client|#include \"server/fd_channel.h\""
)
set(clean
  "core|#include \"absl/status/status.h\"\n#include \"common/unique_fd.h\""
  "common|#include <sys/socket.h>\n#include \"absl/strings/str_cat.h\""
  "client|#include \"common/fd_channel_io.h\"\n#include <grpcpp/grpcpp.h>"
)
set(n 0)
foreach(case IN LISTS cases clean)
  math(EXPR n "${n} + 1")
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 layer)
  list(GET parts 1 text)
  set(dir "${SCRATCH}/case${n}")
  file(REMOVE_RECURSE "${dir}")
  file(WRITE "${dir}/planted.cc" "${text}\n")
  execute_process(
    COMMAND ${CMAKE_COMMAND} -DLAYER=${layer} -DDIR=${dir} -P ${CHECK}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  list(FIND clean "${case}" is_clean)
  if(is_clean GREATER -1)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "the ${layer} check refused a clean file:\n${err}")
    endif()
  elseif(rc EQUAL 0 OR NOT err MATCHES "planted.cc")
    message(FATAL_ERROR
      "the ${layer} check passed (or did not name the file) for: ${text}\n${out}${err}")
  endif()
endforeach()
file(REMOVE_RECURSE "${SCRATCH}")
message(STATUS "every layering check fails on a planted include: ${n} cases")
