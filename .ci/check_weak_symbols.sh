#!/usr/bin/env bash
# Fails if a kernel object file defines a weak symbol. Kernel files are compiled with ISA flags
# (-mavx2, -mavx512f, ...); a weak definition in one of them (an inline function or template
# from a shared header) can be the copy the linker keeps for every caller, so code that the
# dispatcher thought portable would run AVX instructions and die with SIGILL on older CPUs.
#
# Usage: .ci/check_weak_symbols.sh BUILD_DIR   (after building; exit 0 clean, 1 weak or none)
set -euo pipefail

if [[ $# -ne 1 || ! -d $1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build_dir=$1

# CMake mirrors the source tree under <target>.dir/, so this finds every object compiled from
# cpp/src/kernels/ whatever its target is called (softzo_softmax_avx2, ..._avx512emu, ...).
mapfile -d '' objects < <(find "$build_dir" -path '*.dir/cpp/src/kernels/*' \
                            \( -name '*.o' -o -name '*.obj' \) -print0 | sort -z)
if (( ${#objects[@]} == 0 )); then
  echo "check_weak_symbols: FAIL: no kernel object files under $build_dir (not built yet?)" >&2
  exit 1
fi

weak_total=0
bad_objects=0
for obj in "${objects[@]}"; do
  if ! symbols=$(nm -C -- "$obj"); then
    echo "check_weak_symbols: FAIL: nm could not read $obj" >&2
    exit 1
  fi
  # Defined weak symbols only: "<address> W name" / "<address> V name". Demangled names may
  # contain spaces, so match the type column rather than any " W " in the line.
  weak=$(grep -E '^[0-9a-fA-F]+ [WV] ' <<<"$symbols" || true)
  if [[ -n $weak ]]; then
    echo "$obj:"
    sed 's/^/  /' <<<"$weak"
    weak_total=$((weak_total + $(wc -l <<<"$weak")))
    bad_objects=$((bad_objects + 1))
  fi
done

if (( weak_total > 0 )); then
  echo "check_weak_symbols: FAIL: $weak_total weak symbol(s) in $bad_objects of ${#objects[@]} kernel object(s)"
  exit 1
fi
echo "check_weak_symbols: OK: ${#objects[@]} kernel object(s), no weak symbols"
