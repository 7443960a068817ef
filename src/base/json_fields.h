// Reading fields of JSON that someone else wrote (a control client, the
// guest agent, the guest): nlohmann's value() and get() throw on a field of
// the wrong type, and an uncaught throw ends the process. These never throw.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

namespace snapvm {

// The field `key` of `j` as T, or nullopt when j is not an object, the field
// is missing, or it does not hold a T (integers must also fit T).
template <typename T>
std::optional<T> json_field(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  const nlohmann::json& v = *it;
  if constexpr (std::is_same_v<T, bool>) {
    if (v.is_boolean()) return v.get<bool>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (v.is_string()) return v.get<std::string>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (v.is_number()) return v.get<T>();
  } else if constexpr (std::is_integral_v<T>) {
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(u);
    } else if (v.is_number_integer()) {
      int64_t s = v.get<int64_t>();
      if constexpr (std::is_signed_v<T>) {
        if (s >= std::numeric_limits<T>::min() && s <= std::numeric_limits<T>::max()) return static_cast<T>(s);
      } else {
        if (s >= 0 && static_cast<uint64_t>(s) <= std::numeric_limits<T>::max()) return static_cast<T>(s);
      }
    }
  } else {
    static_assert(sizeof(T) == 0, "json_field: unsupported type");
  }
  return std::nullopt;
}

// The same with a fallback for a missing or mistyped field.
template <typename T>
T json_field_or(const nlohmann::json& j, const char* key, T fallback) {
  auto v = json_field<T>(j, key);
  return v ? *v : fallback;
}

}  // namespace snapvm
