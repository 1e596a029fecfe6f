#include "gateway/model_catalog.h"

namespace omni::gateway {

Result<EngineBackend*> SingleModelCatalog::backend(const std::string& id) {
  const std::string& served = backend_->description().id;
  if (id != served)
    return Error{ErrorCode::NotFound, "the model '" + id + "' does not exist; this gateway serves '" + served + "'"};
  return backend_.get();
}

}  // namespace omni::gateway
