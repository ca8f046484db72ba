#include "server/logging.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"
#include "nlohmann/json.hpp"
#include "server/log_rate_limiter.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace shmbroker {
namespace {

// %* in a pattern: the message as a JSON string, quotes and escapes
// included (invalid UTF-8 is replaced rather than thrown over).
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string quoted =
        nlohmann::json(std::string(msg.payload.data(), msg.payload.size()))
            .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(quoted.data(), quoted.data() + quoted.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

// Protobuf logs what a peer's bytes make it say, e.g. an ERROR for each
// request with invalid UTF-8 in a string field, which any client can send
// at will: into the daemon's log, rate-limited like every line a client can
// cause, never straight to stderr.
void ProtobufLog(google::protobuf::LogLevel level, const char* file, int line,
                 const std::string& message) {
  uint64_t suppressed = 0;
  if (level < google::protobuf::LOGLEVEL_FATAL &&
      !LogRateLimits::ClientWarnings().Allow(&suppressed)) {
    return;
  }
  spdlog::warn("protobuf ({}:{}): {}{}", file, line, message,
               SuppressedNote(suppressed));
}

}  // namespace

absl::Status SetUpLogging(const std::string& level_name,
                          const std::string& format) {
  spdlog::level::level_enum level = spdlog::level::from_str(level_name);
  if (level == spdlog::level::off && level_name != "off") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--log_level=", level_name, ": use trace, debug, info, warn or error"));
  }
  auto logger = spdlog::stderr_logger_mt("shmbrokerd");
  if (format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":%*})");
    logger->set_formatter(std::move(formatter));
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
  }
  logger->set_level(level);
  spdlog::set_default_logger(logger);
  google::protobuf::SetLogHandler(&ProtobufLog);
  return absl::OkStatus();
}

}  // namespace shmbroker
