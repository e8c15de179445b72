#!/bin/sh
# CTest entry of the Node client test: skips (77) unless node and node_modules are there
# (the test runner does `npm install` in this folder first).
here=$(dirname "$0")
command -v node >/dev/null 2>&1 || { echo "node not installed: skipping"; exit 77; }
[ -d "$here/node_modules/@grpc/grpc-js" ] && [ -d "$here/node_modules/@grpc/proto-loader" ] || {
  echo "no node_modules (run npm install in $here): skipping"; exit 77; }
exec node "$here/generate_test.js"
