# Shared by the benchmark scripts (sourced, not run): a work folder that goes away on exit with
# every service started into PIDS, a free loopback port, waiting for a service to serve, and the
# layer list of a checkpoint. Needs BUILD set.

# bench_work NAME: WORK (a fresh folder), PIDS (services to stop), and the EXIT trap.
bench_work() {
  WORK=$(mktemp -d "/tmp/specdec_$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_serving ADDR PID NAME: returns once ADDR answers health checks; fails with the service's
# log ($WORK/NAME.log) when the process exits or after 60 s.
wait_serving() {
  for _ in $(seq 1 600); do
    if "$BUILD/services/client/specdec" health --server "$1" --timeout_ms 500 >/dev/null 2>&1; then return 0; fi
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "specdec-${3%%.*} ($1) never became SERVING; its log:" >&2
  tail -n 20 "$WORK/$3.log" >&2; return 1
}

# all_layers MODEL_DIR: "0,1,...,L-1" for the checkpoint's L layers (a draft that keeps them all).
all_layers() {
  python3 -c 'import json,sys; print(",".join(map(str, range(json.load(open(sys.argv[1]))["num_hidden_layers"]))))' "$1/config.json"
}
