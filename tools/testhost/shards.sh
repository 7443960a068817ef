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
rm -f /tmp/shard-1.rc /tmp/shard-2.rc
( "$@" --gtest_filter="$first" 2>&1; echo $? > /tmp/shard-1.rc ) | awk '{ print "[1] " $0; fflush() }' &
( "$@" --gtest_filter="*-$first" 2>&1; echo $? > /tmp/shard-2.rc ) | awk '{ print "[2] " $0; fflush() }' &
wait
rc=0
for n in 1 2; do
  r=$(cat "/tmp/shard-$n.rc" 2>/dev/null || echo "no status")
  echo "shard $n ($([ $n = 1 ] && echo "$first" || echo "the rest")) exited $r"
  [ "$r" = 0 ] || rc=1
done
exit $rc
