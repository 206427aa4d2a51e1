#!/usr/bin/env bash
# fuzz.sh - run every Go fuzz target of the repository for a short while.
#
# Finds each "func FuzzXxx(" in *_test.go files and runs it alone in its
# package: go test -run '^$' -fuzz '^FuzzXxx$' -fuzztime $FUZZTIME.
# Prints a line per target and fails if any target fails. With no fuzz
# targets it says so and succeeds.
#
#   FUZZTIME   time per target (default 10s)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZTIME=${FUZZTIME:-10s}

# "dir<TAB>name" for every fuzz target, outside testdata and vendor.
mapfile -t targets < <(
  grep -rIE --include='*_test.go' --exclude-dir=testdata --exclude-dir=vendor --exclude-dir=.git \
    '^func Fuzz[A-Za-z0-9_]*\(' . 2>/dev/null |
  sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1\t\2#' | sort -u
)

if (( ${#targets[@]} == 0 )); then
  echo "fuzz: no fuzz targets found"
  exit 0
fi

echo "fuzz: ${#targets[@]} target(s), $FUZZTIME each"
failed=()
for t in "${targets[@]}"; do
  dir=${t%%$'\t'*}; name=${t#*$'\t'}
  start=$(date +%s)
  ok=0
  for attempt in 1 2; do
    if out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$dir" 2>&1); then
      ok=1; break
    fi
    # Go's fuzzing coordinator sometimes reports the end of -fuzztime itself
    # as "context deadline exceeded" without any failing input: that is not
    # a finding (a real one writes its input under testdata/fuzz), so the
    # target runs once more.
    if grep -q 'Failing input written' <<<"$out" || ! grep -q 'context deadline exceeded' <<<"$out"; then
      break
    fi
    echo "fuzz: $dir $name: the fuzzing run timed out without a finding; running it again"
  done
  if (( ok )); then
    echo "fuzz: ok   $dir $name ($(( $(date +%s) - start ))s)"
  else
    echo "fuzz: FAIL $dir $name"
    echo "$out" | tail -40
    failed+=("$dir $name")
  fi
done

if (( ${#failed[@]} > 0 )); then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
  exit 1
fi
echo "fuzz: all ${#targets[@]} target(s) passed"
