#!/usr/bin/env bash
# The concurrency tests under ThreadSanitizer: configures build-tsan/ with -DSPECDEC_TSAN=ON
# (clang), builds only the chosen test binaries (and the services the process-level test starts),
# runs each with TSAN_OPTIONS (halt on the first report, tests/tsan/suppressions.txt) and fails
# on any report, from the test binaries or from the service processes they start (every process
# writes its reports under build-tsan/tsan-logs/). tests/run.sh runs it unless
# SPECDEC_SKIP_TSAN=1; tests/README.md says what runs and why.
# Exit status: 0 clean; 1 when the build failed, a test failed or TSan reported.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
build="${SPECDEC_TSAN_BUILD_DIR:-$repo/build-tsan}"
start=$SECONDS

# What runs, binary and gtest filter. Torch-free concurrency code first; forward_batcher_test
# loads a model (our CPU engine, libtorch linked but not instrumented).
tests=(
  "cpu_kernels_test:ParallelTest.*"
  "forward_batcher_test:*"
  "generation_session_test:*"
  "replica_set_test:*"
)
targets=(cpu_kernels_test forward_batcher_test generation_session_test replica_set_test)

cxx="${SPECDEC_TSAN_CXX:-clang++}"
cc="${SPECDEC_TSAN_CC:-clang}"
mkdir -p "$build"
CC="$cc" CXX="$cxx" cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSPECDEC_TSAN=ON >"$build/configure.log" 2>&1 || {
  tail -n 30 "$build/configure.log" >&2
  echo "tsan: FAILED: cmake configure (log: $build/configure.log)" >&2
  exit 1
}
cmake --build "$build" -j2 --target "${targets[@]}" || {
  echo "tsan: FAILED: build" >&2
  exit 1
}
build_s=$((SECONDS - start))

logs="$build/tsan-logs"
rm -rf "$logs"
mkdir -p "$logs"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 \
suppressions=$repo/tests/tsan/suppressions.txt log_path=$logs/tsan"
failed=()
for entry in "${tests[@]}"; do
  binary="${entry%%:*}"
  filter="${entry#*:}"
  t0=$SECONDS
  status=0
  timeout 600 "$build/$(cd "$build" && find . -name "$binary" -type f -perm -u+x | head -n 1)" \
    --gtest_filter="$filter" --gtest_brief=1 >"$logs/$binary.out" 2>&1 || status=$?
  echo "tsan: $binary ($filter): exit $status, $((SECONDS - t0)) s"
  [[ $status -eq 0 ]] || { tail -n 20 "$logs/$binary.out"; failed+=("$binary"); }
done

reports=("$logs"/tsan.*)
if [[ -e "${reports[0]}" ]]; then
  for report in "${reports[@]}"; do
    echo "=== $report" >&2
    cat "$report" >&2
  done
  echo "tsan: FAILED: ThreadSanitizer reported (${#reports[@]} process(es); above)" >&2
  exit 1
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "tsan: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "tsan: passed, no reports (configure + build ${build_s} s, tests $((SECONDS - start - build_s)) s)"
