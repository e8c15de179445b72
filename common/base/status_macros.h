// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status code.
// Debian's Abseil (20220623) ships no status macros, so the project defines this pair once.
#ifndef SPECDEC_COMMON_BASE_STATUS_MACROS_H_
#define SPECDEC_COMMON_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SPECDEC_CONCAT_INNER_(a, b) a##b
#define SPECDEC_CONCAT_(a, b) SPECDEC_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::absl::Status specdec_status_ = (expr);           \
    if (!specdec_status_.ok()) return specdec_status_; \
  } while (0)

// ASSIGN_OR_RETURN(auto x, F()): declares/assigns `lhs` from an OK StatusOr, else returns.
#define ASSIGN_OR_RETURN(lhs, expr) \
  SPECDEC_ASSIGN_OR_RETURN_IMPL_(SPECDEC_CONCAT_(specdec_statusor_, __LINE__), lhs, expr)
#define SPECDEC_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()

#endif  // SPECDEC_COMMON_BASE_STATUS_MACROS_H_
