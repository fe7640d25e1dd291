#!/usr/bin/env bash
# The issue-20 searches at the CPU budget (search_spaces/cpu/*.yaml), one after another, each to its end.
# Start it from a separate clone, so the working tree never changes under a running sweep; starting it
# again is safe: a finished search is skipped, an interrupted one continues with --resume.
#   git clone <repo> ../bench && cd ../bench && nohup bash benchmarks/search_queue.sh > queue.log 2>&1 &
#   bash benchmarks/search_queue.sh expansive koopcon      # only these, in this order
#   bash benchmarks/search_queue.sh search_spaces/gan_comparison.yaml   # any space file, by path
# When all have finished: python benchmarks/search_summary.py (JSON per method, the results table).
set -u
cd "$(dirname "$0")/.."
RAYSYNTH=${RAYSYNTH:-raysynth}
STATE=benchmarks/results/search_queue
mkdir -p "$STATE"
for entry in ${@:-learned_augmentation expansive koopcon dm scola eieg}; do
  case "$entry" in  # a bare name is a CPU search space; a path is any space file
    */*) space=$entry; name=$(echo "${entry%.yaml}" | tr / _) ;;
    *) space=search_spaces/cpu/$entry.yaml; name=$entry ;;
  esac
  if [ -e "$STATE/$name.done" ]; then
    echo "$(date -u +%FT%TZ) $name: finished before, skipped"
    continue
  fi
  log="$STATE/$name.log"
  echo "$(date -u +%FT%TZ) $name: starting (log $log)"
  if [ -s "$log" ]; then  # an earlier attempt: continue its sweep; a sweep that never started runs anew
    "$RAYSYNTH" sweep "$space" --resume >> "$log" 2>&1
    status=$?
    if [ $status -ne 0 ] && tail -n 3 "$log" | grep -q "no interrupted sweep"; then
      "$RAYSYNTH" sweep "$space" >> "$log" 2>&1
      status=$?
    fi
  else
    "$RAYSYNTH" sweep "$space" > "$log" 2>&1
    status=$?
  fi
  # 0: every trial finished; 1: finished with failed trials (recorded in MLflow); else interrupted or broken
  if [ $status -le 1 ]; then
    touch "$STATE/$name.done"
    echo "$(date -u +%FT%TZ) $name: finished (exit $status)"
  else
    echo "$(date -u +%FT%TZ) $name: stopped (exit $status); run the queue again to resume it"
    exit $status
  fi
done
