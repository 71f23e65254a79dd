#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and prints one summary line per
# target (execs, execs/s, corpus size, crashes). Not part of CI; see docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
#
# Needs cargo-fuzz (installed here with `cargo install cargo-fuzz --locked` when missing) and
# a nightly compiler for the sanitizer flags: `+nightly` when rustup has one, otherwise the
# stable compiler with RUSTC_BOOTSTRAP=1. Environment:
#   FUZZ_SANITIZER   address (default) or none (about twice the execs/s, no ASan)
#   FUZZ_JOBS        parallel fuzzing processes per target (default 1)
#   FUZZ_RUNS        stop each target after this many executions (SECONDS stays the cap)
#   CARGO_TARGET_DIR build directory (default fuzz/target)
# New corpus entries go to fuzz/corpus/TARGET and crashes to fuzz/artifacts/TARGET (both
# git-ignored); the committed seeds in fuzz/seeds/TARGET are read but never written.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
sanitizer="${FUZZ_SANITIZER:-address}"
jobs="${FUZZ_JOBS:-1}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  echo "fuzz.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

if (($#)); then targets=("$@"); else mapfile -t targets < <("${fuzz[@]}" list); fi

# Debug assertions on, so integer overflow panics instead of wrapping.
"${fuzz[@]}" build --release --debug-assertions --sanitizer "$sanitizer"

mkdir -p artifacts
summary=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  log="artifacts/$target.log"
  echo "fuzz.sh: $target for ${seconds}s" >&2
  status=0
  parallel=()
  if ((jobs > 1)); then parallel=(-jobs="$jobs" -workers="$jobs"); fi
  runs=()
  if [[ -n ${FUZZ_RUNS:-} ]]; then runs=(-runs="$FUZZ_RUNS"); fi
  # -timeout: an input that takes a second is a finding (quadratic blow-up), not noise.
  "${fuzz[@]}" run --release --debug-assertions --sanitizer "$sanitizer" "$target" \
    "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -max_len=16384 \
    "${parallel[@]}" "${runs[@]}" -print_final_stats=1 >"$log" 2>&1 || status=$?
  # With -jobs, each worker writes fuzz-N.log; fold them into the target's log.
  for worker in fuzz-*.log; do [[ -e $worker ]] && cat "$worker" >>"$log" && rm -f "$worker"; done
  execs=$(awk '/stat::number_of_executed_units/ {s += $2} END {print s + 0}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {s += $2} END {print s + 0}' "$log")
  corpus=$(find "corpus/$target" -type f | wc -l)
  crashes=$(find "artifacts/$target" -type f | wc -l)
  summary+=("| $target | $execs | $rate | $corpus | $crashes | $status |")
  if ((status != 0)); then
    echo "fuzz.sh: $target exited $status; see fuzz/$log and fuzz/artifacts/$target" >&2
  fi
done

echo "| target | execs | execs/s | corpus | crashes | exit |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${summary[@]}"
