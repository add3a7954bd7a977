#!/usr/bin/env bash
# Run the compiled kernels under valgrind memcheck (see bench/memcheck.py); exit 1 on any error
# in fastrnn's extension. PYTHONMALLOC=malloc lets valgrind see Python's allocations too, and
# FASTRNN_KEEP_SCRATCH=0 the kernels' scratch blocks exactly as large as each call asks (csrc/scratch.h).
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
python=$(python3 -c "import sys; print(sys.executable)")   # the interpreter, not a shim script
PYTHONMALLOC=malloc FASTRNN_KEEP_SCRATCH=0 valgrind --tool=memcheck --error-limit=no --num-callers=30 \
    "$python" bench/memcheck.py 2> "$log" || true
grep -E "ERROR SUMMARY" "$log" || { echo "memcheck: valgrind did not run the interpreter"; exit 1; }
# Python itself reports a few benign issues; count only errors with a fastrnn frame.
errors=$(grep -E "^==[0-9]+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Mismatched free)" -A 12 "$log" \
         | grep -c "_kernels" || true)
echo "memcheck: $errors error(s) in fastrnn's extension (full log: $log)"
[ "$errors" -eq 0 ]
