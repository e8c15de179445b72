// glibc malloc settings for the model services (draft, verifier).
#ifndef SPECDEC_SERVICES_COMMON_MALLOC_TUNING_H_
#define SPECDEC_SERVICES_COMMON_MALLOC_TUNING_H_

namespace specdec {

// Keeps the large buffers of forward passes (logits rows, activations: hundreds of KiB to a few
// MiB each, allocated and freed every step) on the heap instead of fresh mmap()s. glibc's
// dynamic mmap threshold usually learns this, but not reliably on the services' gRPC threads:
// measured on the trained tiny checkpoint, K=8, sequential rounds, 3x45 verifications: with the
// defaults 7-16 of 45 took 15-18 ms instead of ~5 ms (page faults on fresh mappings); with
// these settings 0-1 did. Freed memory up to 128 MiB stays in the process for reuse.
void KeepLargeBuffersOnTheHeap();

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_MALLOC_TUNING_H_
