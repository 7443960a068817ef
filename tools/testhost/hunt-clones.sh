#!/bin/sh
# Runs inside a test host (busybox sh): boots a guest with VCPUS vCPUs under
# a CPU and memory load, takes SNAPSHOTS live snapshots at random moments,
# and restores CLONES clones from them in fresh processes, one after the
# other. Each clone must answer the agent, live 3 s more and show every
# worker still counting. One line per clone, then a summary; an unhealthy
# clone's VMM output and console end are printed in full.
#
#   hunt-clones.sh CLONES SNAPSHOTS [VCPUS] [MEM]
set -u
clones=$1 snaps=$2 vcpus=${3:-4} mem=${4:-512M}
S=/payload/snapvm
per=$(( (clones + snaps - 1) / snaps ))
now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
started=$(now_ms)
cd /tmp

# Waits (up to SECONDS of wall time, whatever each try costs) until the
# agent behind VSOCK runs a command while PID lives; prints its output.
agent() {  # vsock pid seconds command...
  local vsock=$1 pid=$2 deadline=$(( $(now_ms) + $3 * 1000 )) out
  shift 3
  while :; do
    if out=$($S exec "$vsock" -t 30 -- "$@" 2>/tmp/agent.err); then echo "$out"; return 0; fi
    kill -0 "$pid" 2>/dev/null || return 2
    [ "$(now_ms)" -lt "$deadline" ] || return 1
    sleep 1
  done
}

$S run -k /payload/guest/kernel --initrd /payload/guest/initrd.cpio --cpus "$vcpus" --mem "$mem" \
  --vsock /tmp/base.vsock --api /tmp/base.api --console /tmp/base.console >/tmp/base.log 2>&1 &
base=$!
if ! agent /tmp/base.vsock $base 300 true >/dev/null; then
  echo "HUNT the base guest never answered; its VMM said:"; cat /tmp/base.log; tail -n 30 /tmp/base.console
  echo "HUNT-SUMMARY base-failed"; exit 1
fi
echo "HUNT base guest up after $(( ($(now_ms) - started) / 1000 )) s ($vcpus vCPUs, $mem)"
# Four workers each hash a fresh random block and count; a fifth rewrites
# 32 MiB of page cache, so every snapshot catches dirty memory and clones
# take copy-on-write faults. The base stays paused while its clones run:
# the clones are under test, and the emulated host has two CPUs for them.
agent /tmp/base.vsock $base 10 sh -c '
for i in 1 2 3 4; do
  setsid sh -c "n=0; while :; do head -c 131072 /dev/urandom | md5sum >/dev/null; n=\$((n+1)); echo \$n > /tmp/c$i; mv /tmp/c$i /tmp/count$i; done" </dev/null >/dev/null 2>&1 &
done
setsid sh -c "while :; do dd if=/dev/urandom of=/tmp/churn bs=1M count=32 2>/dev/null; done" </dev/null >/dev/null 2>&1 &
echo load started' || { echo "HUNT-SUMMARY load-failed"; exit 1; }

# A clone is healthy when every worker counts on: the four counts.
counts='for i in 1 2 3 4; do printf "%s " "$(cat /tmp/count$i)"; done'
healthy=0 resets=0 silent=0 stalled=0 other=0 n=0
s=0
while [ $s -lt "$snaps" ] && [ $n -lt "$clones" ]; do
  s=$((s + 1))
  sleep "$((RANDOM % 2 + 1)).$((RANDOM % 10))"
  if ! $S snapshot /tmp/base.api /tmp/hunt.snap >/tmp/snap.log 2>&1; then
    echo "HUNT snapshot $s failed: $(cat /tmp/snap.log)"; other=$((other + 1)); continue
  fi
  c=0
  while [ $c -lt $per ] && [ $n -lt "$clones" ]; do
    c=$((c + 1)) n=$((n + 1))
    rm -f /tmp/clone.vsock* /tmp/clone.console
    t0=$(now_ms)
    $S restore /tmp/hunt.snap --vsock /tmp/clone.vsock --console /tmp/clone.console >/tmp/clone.log 2>&1 &
    pid=$!
    verdict=""
    if before=$(agent /tmp/clone.vsock $pid 120 sh -c "$counts"); then
      up_ms=$(( $(now_ms) - t0 ))
      sleep 3
      tries=0
      while :; do
        if ! after=$(agent /tmp/clone.vsock $pid 10 sh -c "$counts"); then
          kill -0 $pid 2>/dev/null && verdict=silent-later || verdict=ended; break
        fi
        # Every one of the four counts moved on.
        if echo "$before|$after" | awk -F'|' '{ if (split($1, b, " ") != 4 || split($2, a, " ") != 4) exit 1
                                                 for (i = 1; i <= 4; i++) if (a[i] == b[i]) exit 1 }'; then
          verdict=healthy; break
        fi
        tries=$((tries + 1))
        [ $tries -lt 20 ] || { verdict=stalled; break; }
        sleep 1
      done
    else
      up_ms=$(( $(now_ms) - t0 ))
      kill -0 $pid 2>/dev/null && verdict=silent || verdict=ended
    fi
    kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null
    if [ "$verdict" = ended ] && grep -q 'the guest reset' /tmp/clone.log; then verdict=reset; fi
    case $verdict in
      healthy) healthy=$((healthy + 1)) ;;
      reset) resets=$((resets + 1)) ;;
      silent|silent-later) silent=$((silent + 1)) ;;
      stalled) stalled=$((stalled + 1)) ;;
      *) other=$((other + 1)) ;;
    esac
    echo "HUNT clone $n (snapshot $s): $verdict, agent after ${up_ms} ms; restore $(grep -m1 -o " in [0-9.]* ms" /tmp/clone.log)"
    if [ $verdict != healthy ]; then
      echo "HUNT   its VMM said: $(cat /tmp/clone.log)"
      echo "HUNT   the agent's last error: $(cat /tmp/agent.err 2>/dev/null)"
      echo "HUNT   its console ended:"; tail -n 25 /tmp/clone.console 2>/dev/null | sed 's/^/HUNT   | /'
    fi
  done
  $S resume /tmp/base.api >/dev/null 2>&1
  kill -0 $base 2>/dev/null || { echo "HUNT the base VM ended: $(cat /tmp/base.log)"; break; }
done
kill -TERM $base 2>/dev/null; wait $base 2>/dev/null
bad=$(dmesg | grep -E 'BUG|panic|corrupt|rcu.*stall|soft lockup|hung_task|general protection|Oops' | head -n 5)
[ -z "$bad" ] || { echo "HUNT the host's kernel complained:"; echo "$bad"; }
echo "HUNT-SUMMARY clones=$n healthy=$healthy resets=$resets silent=$silent stalled=$stalled other=$other" \
  "snapshots=$s seconds=$(( ($(now_ms) - started) / 1000 )) host-kernel=$(uname -r) npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null || echo -)"
[ $n -eq "$healthy" ] && [ -z "$bad" ]
