#include "control/control_protocol.h"

#include <nlohmann/json.hpp>

#include "base/json_fields.h"

namespace snapvm {
namespace {

Result<std::string> path_field(const nlohmann::json& req, const char* key, bool required) {
  if (!req.contains(key)) {
    if (required) return make_error(ErrorCode::kInvalidArgument, "snapshot: \"{}\" is required", key);
    return std::string();
  }
  auto v = json_field<std::string>(req, key);
  if (!v || v->empty() || v->size() > kMaxControlPathBytes || v->find('\0') != std::string::npos) {
    return make_error(ErrorCode::kInvalidArgument, "snapshot: \"{}\" must be a file path of 1 to {} bytes", key,
                      kMaxControlPathBytes);
  }
  return *v;
}

}  // namespace

Result<ControlRequest> parse_control_request(std::string_view line) {
  if (line.size() > kMaxControlRequestBytes) {
    return make_error(ErrorCode::kInvalidArgument, "request over {} bytes", kMaxControlRequestBytes);
  }
  auto req = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  auto op = json_field<std::string>(req, "op");
  if (!op) return make_error(ErrorCode::kInvalidArgument, "expected a JSON object with \"op\"");
  ControlRequest r;
  if (*op == "info") {
    r.op = ControlRequest::Op::kInfo;
  } else if (*op == "pause") {
    r.op = ControlRequest::Op::kPause;
  } else if (*op == "resume") {
    r.op = ControlRequest::Op::kResume;
  } else if (*op == "shutdown") {
    r.op = ControlRequest::Op::kShutdown;
  } else if (*op == "events") {
    r.op = ControlRequest::Op::kEvents;
  } else if (*op == "snapshot") {
    r.op = ControlRequest::Op::kSnapshot;
    r.path = SNAPVM_TRY(path_field(req, "path", true));
    r.diff_from = SNAPVM_TRY(path_field(req, "diff_from", false));
    if (req.contains("resume")) {
      auto resume = json_field<bool>(req, "resume");
      if (!resume) return make_error(ErrorCode::kInvalidArgument, "snapshot: \"resume\" must be true or false");
      r.resume = *resume;
    }
  } else {
    std::string shown = op->size() > 64 ? op->substr(0, 64) + "..." : *op;
    return make_error(ErrorCode::kInvalidArgument, "unknown op '{}' (info, pause, resume, snapshot, shutdown, events)", shown);
  }
  return r;
}

}  // namespace snapvm
