#!/bin/sh
# CTest entry of the Node client test: skips (77) unless node and node_modules are there
# (the test runner does `npm install` in this folder first).
here=$(dirname "$0")
command -v node >/dev/null 2>&1 || { echo "node not installed: skipping"; exit 77; }
# Resolve the packages as the test will: an interrupted `npm install` can leave their folders
# without the files node loads.
(cd "$here" && node -e 'require.resolve("@grpc/grpc-js"); require.resolve("@grpc/proto-loader")') \
  >/dev/null 2>&1 || {
  echo "node_modules incomplete or missing (run npm install in $here): skipping"; exit 77; }
exec node "$here/generate_test.js"
