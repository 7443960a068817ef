// What `snapvm image inspect` says about a stored image: a few aligned
// lines for a person, or one JSON object.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "image/catalog.h"

namespace snapvm::cli {

std::string describe_image_text(const image::StoredImage& i);
nlohmann::ordered_json describe_image_json(const image::StoredImage& i);

}  // namespace snapvm::cli
