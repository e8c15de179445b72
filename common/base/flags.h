// Command-line spelling shared by every specdec binary: Abseil flags are C identifiers
// (--text_file), but users type --text-file too; both spellings are accepted.
#ifndef SPECDEC_COMMON_BASE_FLAGS_H_
#define SPECDEC_COMMON_BASE_FLAGS_H_

namespace specdec {

// Rewrites "--some-flag[=v]" to "--some_flag[=v]" in place, before absl::ParseCommandLine.
// Values and positional arguments are left alone.
void NormalizeFlagSpelling(int argc, char** argv);

}  // namespace specdec

#endif  // SPECDEC_COMMON_BASE_FLAGS_H_
