#!/usr/bin/env bash
# Long sweeps one after another, each to its end: the issue-20 searches at the CPU budget
# (search_spaces/cpu/*.yaml) and the issue-19 re-measured tables (benchmarks/queue/*.args).
# Start it from a separate clone, so the working tree never changes under a running sweep; starting it
# again is safe: a finished entry is skipped, an interrupted one continues with --resume. Two queues
# may run side by side from the same clone (e.g. one per free core, with `--set tune.max_concurrent=1`
# in the entries): an entry another live queue is running is skipped (a lock folder per entry).
# `kill <queue pid>` stops the queue and its running sweep, which closes its runs and stays resumable.
# To continue on another machine, pack the stopped store with Tune's state and restore it into a clone at
# the same path (benchmarks/store_archive.py, its docstring), then start the queue there again.
#   git clone <repo> ../bench && cd ../bench && nohup bash benchmarks/search_queue.sh > queue.log 2>&1 &
#   bash benchmarks/search_queue.sh expansive koopcon      # only these, in this order
#   bash benchmarks/search_queue.sh remeasure_gan_comparison   # benchmarks/queue/<name>.args: sweep arguments
#   bash benchmarks/search_queue.sh search_spaces/gan_comparison.yaml   # any space file, by path
# Entry names: a file benchmarks/queue/<name>.args (the space and its flags, `#` comments) or a CPU
# search space search_spaces/cpu/<name>.yaml. When the searches have finished:
# python benchmarks/search_summary.py <method> (JSON per method, the results table), then --overview.
set -u
cd "$(dirname "$0")/.."
RAYSYNTH=${RAYSYNTH:-raysynth}
STATE=benchmarks/results/search_queue
mkdir -p "$STATE"

# `kill <queue pid>` (or Ctrl-C) stops the running sweep as SIGTERM does (tagged interrupted, resumable) and
# then the queue: bash runs no trap while it waits on a foreground child, so the sweep runs in the background
sweep_pid=""
trap 'if [ -n "$sweep_pid" ]; then kill -TERM "$sweep_pid" 2>/dev/null; fi' TERM INT
sweep() {  # appends to $log; sets $status to the sweep's exit status
  "$RAYSYNTH" sweep "$@" >> "$log" 2>&1 &
  sweep_pid=$!
  while :; do  # a trap interrupts `wait`: wait again until the sweep has closed its runs and exited
    wait "$sweep_pid"
    status=$?
    kill -0 "$sweep_pid" 2>/dev/null || break
  done
  sweep_pid=""
}
for entry in ${@:-learned_augmentation expansive koopcon dm scola eieg}; do
  case "$entry" in
    */*) args=("$entry"); name=$(echo "${entry%.yaml}" | tr / _) ;;
    *) name=$entry
       if [ -e "benchmarks/queue/$name.args" ]; then  # shell words, quotes allowed, `#` to the end of a line
         mapfile -t args < <(sed 's/#.*//' "benchmarks/queue/$name.args" | xargs printf '%s\n')
       else
         args=("search_spaces/cpu/$name.yaml")
       fi ;;
  esac
  if [ ! -e "${args[0]}" ]; then
    echo "$(date -u +%FT%TZ) $name: no such space ${args[0]} (nor benchmarks/queue/$name.args)"
    exit 2
  fi
  if [ -e "$STATE/$name.done" ]; then
    echo "$(date -u +%FT%TZ) $name: finished before, skipped"
    continue
  fi
  lock="$STATE/$name.lock"
  if ! mkdir "$lock" 2>/dev/null; then
    owner=$(cat "$lock/pid" 2>/dev/null)
    if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then
      echo "$(date -u +%FT%TZ) $name: running in another queue (pid $owner), skipped"
      continue
    fi
    echo "$(date -u +%FT%TZ) $name: lock of a queue that no longer runs, taken over"
  fi
  echo $$ > "$lock/pid"
  log="$STATE/$name.log"
  echo "$(date -u +%FT%TZ) $name: starting: raysynth sweep ${args[*]} (log $log)"
  if [ -s "$log" ]; then  # an earlier attempt: continue its sweep; a sweep that never started runs anew
    sweep "${args[@]}" --resume
    if [ $status -ne 0 ] && tail -n 3 "$log" | grep -q "no interrupted sweep"; then
      sweep "${args[@]}"
    fi
  else
    : > "$log"
    sweep "${args[@]}"
  fi
  # 0: every trial finished; 1: finished with failed trials (recorded in MLflow); else interrupted or broken
  rm -rf "$lock"
  if [ $status -le 1 ]; then
    touch "$STATE/$name.done"
    echo "$(date -u +%FT%TZ) $name: finished (exit $status)"
  else
    echo "$(date -u +%FT%TZ) $name: stopped (exit $status); run the queue again to resume it"
    exit $status
  fi
done
