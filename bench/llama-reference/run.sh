#!/usr/bin/env bash
# Our local chat wrapper (kefu-bench local) and llama.cpp's C API alone (reference.c), on the same GGUF, thread
# counts and prompt, one after the other in the same run.
#
#   bench/llama-reference/run.sh MODEL.gguf [THREADS, default "1 2"]
#
# The reference links the very llama.cpp libraries the Rust build compiled (same source, same flags). With
# NATIVE=1 it also builds the same vendored llama.cpp with GGML_NATIVE=ON (every CPU feature of this machine) and
# runs that too, to show what the portable build leaves on the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=$1
threads=${2:-"1 2"}
target=${CARGO_TARGET_DIR:-target}
export OMP_WAIT_POLICY=passive

cargo build --release -q -p kefu-bench
out=$(ls -td "$target"/release/build/llama-cpp-sys-2-*/out | head -n1)
prompt=$(mktemp -d)
trap 'rm -rf "$prompt"' EXIT

build_reference() { # include-dir lib-dir output
  gcc -O2 -c bench/llama-reference/reference.c -I"$1" -o "$3.o"
  g++ -o "$3" "$3.o" -L"$2" -Wl,--start-group -lllama -lggml -lggml-cpu -lggml-base -Wl,--end-group \
    -fopenmp -lpthread -lm -ldl
}
build_reference "$out/include" "$out/lib" "$target/llama-reference"

if [ "${NATIVE:-0}" = 1 ]; then
  src=$(ls -td "$HOME"/.cargo/registry/src/*/llama-cpp-sys-2-"$(grep -A1 'name = "llama-cpp-sys-2"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')"/llama.cpp | head -n1)
  cmake -S "$src" -B "$target/llama-native" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    >/dev/null
  cmake --build "$target/llama-native" -j 2 --target llama ggml >/dev/null
  libdir=$(mktemp -d)
  find "$target/llama-native" -name '*.a' -exec cp {} "$libdir" \;
  build_reference "$src/include -I$src/ggml/include" "$libdir" "$target/llama-reference-native"
fi

for t in $threads; do
  echo "== threads $t: kefu-llm-local (3 turns of one conversation)"
  "$target/release/kefu-bench" local --model "$model" --threads "$t" --write-prompt "$prompt"
  echo "== threads $t: llama.cpp C API, same libraries (turn 1 only, fresh context each run)"
  "$target/llama-reference" "$model" "$t" "$prompt/system.txt" "$prompt/user.txt" 64 2
  if [ "${NATIVE:-0}" = 1 ]; then
    echo "== threads $t: llama.cpp C API, GGML_NATIVE=ON"
    "$target/llama-reference-native" "$model" "$t" "$prompt/system.txt" "$prompt/user.txt" 64 2
  fi
done
