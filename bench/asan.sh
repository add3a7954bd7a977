#!/usr/bin/env bash
# Run the compiled kernels under AddressSanitizer; exit 1 on any error it reports.
#
#   bash bench/asan.sh            # bench/memcheck.py's workload, then the kernel tests
#   bash bench/asan.sh --quick    # bench/memcheck.py's workload only
#
# The extension is rebuilt with -fsanitize=address in a temporary copy of the working tree
# (tracked and untracked, not ignored, files), so the checkout's own build is left alone.
# The interpreter is not instrumented, so libasan is preloaded; leak detection is off because
# CPython deliberately never frees some memory at exit. PYTHONMALLOC=malloc sends Python's own
# small objects through malloc too, where ASan can see overruns into them. ASan stops at the
# first error and prints its report, which this script shows. FASTRNN_KEEP_SCRATCH=0 gives the
# kernels' scratch blocks back to free (csrc/scratch.h), so that each is exactly as large as asked.
# allocator_may_return_null=1: an impossible allocation (a test asks for a terabyte of weights)
# fails as in a plain build, where NumPy raises MemoryError, instead of stopping ASan.
# Compared with bench/memcheck.sh (valgrind): ASan also catches overruns of stack arrays and
# between neighbouring heap blocks that valgrind cannot see, and runs ~2x slower, not ~50x.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(python3 -c "import sys; print(sys.executable)")   # the interpreter, not a shim script
libasan=$(gcc -print-file-name=libasan.so)
[ -f "$libasan" ] || { echo "asan: gcc has no libasan.so ($libasan)"; exit 1; }

work=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$work"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 tar cf - | tar xf - -C "$work"
cd "$work"
echo "asan: building the extension in $work"
CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" LDFLAGS="-fsanitize=address" \
    "$python" setup.py --quiet build_ext --inplace > "$log" 2>&1 \
    || { cat "$log"; echo "asan: build failed"; exit 1; }
# (grep -c, not -q: under pipefail, -q's early exit would fail nm with SIGPIPE)
nm -D fastrnn/_kernels*.so | grep -c __asan_report > /dev/null || { echo "asan: extension not instrumented"; exit 1; }

export PYTHONPATH="$work" LD_PRELOAD="$libasan" PYTHONMALLOC=malloc FASTRNN_KEEP_SCRATCH=0 \
       ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:allocator_may_return_null=1" \
       FASTRNN_BACKEND=cython
# Make sure the copy's instrumented extension is the one imported, not an installed fastrnn.
"$python" -c "import fastrnn._kernels as k, sys; sys.exit(not k.__file__.startswith('$work'))" \
    || { echo "asan: the instrumented extension is not the one imported"; exit 1; }

status=0
"$python" bench/memcheck.py > "$log" 2>&1 || status=$?
if [ "$status" -eq 0 ] && [ "${1:-}" != "--quick" ]; then
    # The memory-growth test measures the resident size, which ASan's quarantine of freed blocks
    # (every Python object, with PYTHONMALLOC=malloc) grows by design: it runs in the plain build.
    "$python" -m pytest -x -q -p no:cacheprovider tests/test_recurrent.py tests/test_team.py tests/test_hardening.py \
        tests/test_backends.py::test_compiled_kernel_reads_x_of_any_layout tests/test_backends.py::test_compiled_step_matches_the_kernel_call \
        --deselect tests/test_hardening.py::test_many_small_calls_do_not_grow_memory \
        >> "$log" 2>&1 || status=$?
fi
grep -E "memcheck: ran|passed|failed" "$log" || true
if grep -q "ERROR: AddressSanitizer" "$log"; then
    grep -B 1 -A 60 "ERROR: AddressSanitizer" "$log"
    echo "asan: AddressSanitizer reported an error (full log: $log)"
    exit 1
fi
[ "$status" -eq 0 ] || { tail -30 "$log"; echo "asan: the workload failed (full log: $log)"; exit 1; }
echo "asan: 0 errors (full log: $log)"
