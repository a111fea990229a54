#!/usr/bin/env bash
# slurm-down.sh: stop the test cluster started by slurm-up.sh.
# Stops slurmd, slurmctld, munged by their pid files, in that order, waits for
# each to exit (SIGKILL after 10 s: slurmd can ignore SIGTERM while it retries
# registration), so an immediate slurm-up.sh does not race a dying munged.
# Idempotent: nothing running = nothing to do, exit 0. Packages stay installed.
set -uo pipefail
[ "$(id -u)" = 0 ] || { echo "slurm-down.sh: FAILED: must run as root" >&2; exit 1; }
# Jobs still queued would be requeued by the next slurmctld start: cancel them.
if [ -s /run/slurm/slurmctld.pid ] && kill -0 "$(cat /run/slurm/slurmctld.pid)" 2>/dev/null; then
  timeout 10 scancel --quiet --user=root >/dev/null 2>&1 || true
fi
for spec in slurmd:/run/slurm/slurmd.pid slurmctld:/run/slurm/slurmctld.pid munged:/run/munge/munged.pid; do
  name=${spec%%:*}; f=${spec#*:}
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$name" ]; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null; sleep 0.5; fi
    if kill -0 "$pid" 2>/dev/null; then echo "slurm-down.sh: FAILED: $name ($pid) survived SIGKILL" >&2; exit 1; fi
    echo "stopped $name ($pid)"
  fi
  rm -f "$f"
done
exit 0
