#!/bin/sh
# Runs the whole KVM test suite as two shards at once inside a test host
# (busybox sh): most tests keep one guest vCPU busy while the host's second
# CPU idles, so two shards use both. Tests are split by suite, never within
# one: a suite's tests share paths, taps and sometimes one VM (Agent); suites
# in different files share none. Each output line is prefixed with its
# shard's number; the exit status is 0 only if both shards passed.
#
#   shards.sh SUITES COMMAND...
# Shard 1 runs SUITES (a gtest filter such as "Boot.*:Net.*"), shard 2 all
# the others, so that a new suite lands there without being listed.
set -u
first=$1
shift
rm -f /tmp/shard-1.rc /tmp/shard-2.rc /tmp/shards.done
# The host's memory while both shards run (snapshots live in a tmpfs /tmp,
# so they count too): the least available and the most in /tmp, and a line
# with /tmp's biggest files the first time available memory drops under
# 256 MiB, so that a test killed for memory says so.
(
  least=999999 most=0 warned=no
  while [ ! -e /tmp/shards.done ]; do
    avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
    used=$(df -m /tmp | awk 'NR == 2 { print $3 }')
    [ "$avail" -lt "$least" ] && least=$avail
    [ "$used" -gt "$most" ] && most=$used
    if [ "$avail" -lt 256 ] && [ $warned = no ]; then
      warned=yes
      echo "[memory] only $avail MiB available, $used MiB in /tmp; biggest there:" \
        "$(du -am /tmp 2>/dev/null | sort -rn | sed -n '2,6p' | tr '\n' ' ')"
    fi
    sleep 2
  done
  echo "memory: least available $least MiB of $(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)," \
    "most in /tmp $most MiB"
) &
sampler=$!
( "$@" --gtest_filter="$first" 2>&1; echo $? > /tmp/shard-1.rc ) | awk '{ print "[1] " $0; fflush() }' &
shard1=$!
( "$@" --gtest_filter="*-$first" 2>&1; echo $? > /tmp/shard-2.rc ) | awk '{ print "[2] " $0; fflush() }' &
shard2=$!
wait $shard1 $shard2
touch /tmp/shards.done
wait $sampler
rc=0
for n in 1 2; do
  r=$(cat "/tmp/shard-$n.rc" 2>/dev/null || echo "no status")
  echo "shard $n ($([ $n = 1 ] && echo "$first" || echo "the rest")) exited $r"
  [ "$r" = 0 ] || rc=1
done
if [ $rc != 0 ]; then  # a test killed by the kernel leaves no message of its own
  dmesg | grep -iE 'out of memory|oom-kill|killed process|segfault|traps:' | tail -n 20
fi
exit $rc
