// The command-line flags of ModelServiceOptions, defined once for specdec-draft and
// specdec-verifier (each main.cc keeps --listen, whose default port differs, and its own flags).
// A library of its own so that only the two mains register these flags.
#ifndef SPECDEC_SERVICES_COMMON_MODEL_SERVICE_FLAGS_H_
#define SPECDEC_SERVICES_COMMON_MODEL_SERVICE_FLAGS_H_

#include "services/common/model_service_options.h"

namespace specdec {

// Copies the parsed flags into `options` (call after absl::ParseCommandLine).
void ReadModelServiceFlags(ModelServiceOptions* options);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_MODEL_SERVICE_FLAGS_H_
