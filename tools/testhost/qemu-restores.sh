#!/bin/sh
# Runs inside the x86_64 test host (busybox sh): QEMU itself as the VMM on
# the host's KVM, as the vs-qemu benchmark runs it (microvm, -accel kvm),
# saves one busy 4-vCPU guest with `migrate` to a file and restores it
# RESTORES times with -incoming. A restored guest is healthy when QEMU still
# runs it 3 s later and its four workers' counts, printed on the serial
# console each second, all moved on. This tells a fault of the host (QEMU's
# restored guests reset too) from one of snapvm's (only snapvm's do).
#
#   qemu-restores.sh RESTORES [VCPUS] [MEM_MIB]
set -u
restores=$1 vcpus=${2:-4} mem=${3:-512}
Q=/payload/qemu/qemu
cd /tmp
# The test guest's initramfs with a load as its /init: no agent (QEMU's
# guest has no vsock here), progress on the console instead.
mkdir -p /tmp/qguest && (cd /tmp/qguest && cpio -id < /payload/guest/initrd.cpio 2>/dev/null)
cat > /tmp/qguest/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /dev /tmp
mount -t proc proc /proc; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
for i in 1 2 3 4; do
  (n=0; while :; do head -c 131072 /dev/urandom | md5sum >/dev/null; n=$((n+1)); echo $n > /tmp/c$i; mv /tmp/c$i /tmp/count$i; done) &
done
(while :; do dd if=/dev/urandom of=/tmp/churn bs=1M count=32 2>/dev/null; done) &
echo LOAD-READY
while :; do sleep 1; echo "tick $(cat /tmp/count1) $(cat /tmp/count2) $(cat /tmp/count3) $(cat /tmp/count4)"; done
INIT
chmod +x /tmp/qguest/init
(cd /tmp/qguest && find . | cpio -o -H newc 2>/dev/null) > /tmp/qload.cpio

# QEMU's human monitor on a pipe pair (/tmp/mon.in, /tmp/mon.out).
start_qemu() {  # console, extra args...
  local console=$1
  shift
  rm -f /tmp/mon.in /tmp/mon.out
  mkfifo /tmp/mon.in /tmp/mon.out
  $Q -M microvm -accel kvm -cpu host -m "${mem}M" -smp "$vcpus" -nodefaults -no-user-config -display none \
    -no-reboot -serial "file:$console" -kernel /payload/guest/kernel -initrd /tmp/qload.cpio \
    -append "console=ttyS0 quiet panic=-1 reboot=k pci=off" -monitor pipe:/tmp/mon "$@" >/tmp/qemu.log 2>&1 &
  qemu=$!
  exec 3>/tmp/mon.in 4</tmp/mon.out
  (cat <&4 > /tmp/mon.log) &
}
hmp() { echo "$1" >&3; sleep 0.3; }
stop_qemu() { hmp quit; sleep 0.5; kill -9 $qemu 2>/dev/null; wait $qemu 2>/dev/null; exec 3>&- 4<&-; }
ticks_advance() {  # console: within 20 s, two ticks 3 s apart differ in every count
  local a b tries=0
  while [ $tries -lt 20 ]; do
    tries=$((tries + 1))
    a=$(grep '^tick' "$1" | tail -n 1)
    sleep 3
    b=$(grep '^tick' "$1" | tail -n 1)
    echo "$a|$b" | awk -F'|' '{ if (split($1, x, " ") != 5 || split($2, y, " ") != 5) exit 1
                                for (i = 2; i <= 5; i++) if (x[i] == y[i]) exit 1 }' && return 0
  done
  return 1
}

start_qemu /tmp/qbase.console
i=0; until grep -q LOAD-READY /tmp/qbase.console 2>/dev/null; do
  sleep 1; i=$((i + 1))
  [ $i -lt 300 ] || { echo "QEMU-RESTORES the saved guest never booted: $(cat /tmp/qemu.log)"; exit 1; }
done
sleep 3
ticks_advance /tmp/qbase.console || { echo "QEMU-RESTORES the saved guest does not progress; its console:"; tail -n 20 /tmp/qbase.console; exit 1; }
hmp stop
hmp 'migrate "exec:cat > /tmp/qemu.img"'
i=0; until hmp "info migrate" && grep -q 'completed' /tmp/mon.log; do
  i=$((i + 1)); [ $i -lt 600 ] || { echo "QEMU-RESTORES the save never completed"; exit 1; }
done
stop_qemu
echo "QEMU-RESTORES saved a ${vcpus}-vCPU guest under load: $(du -m /tmp/qemu.img | cut -f1) MiB"

healthy=0 resets=0 stalled=0 n=0
while [ $n -lt "$restores" ]; do
  n=$((n + 1))
  : > /tmp/qclone.console
  start_qemu /tmp/qclone.console -incoming "exec:cat /tmp/qemu.img"
  # Loaded once the status is no longer "paused (inmigrate)"; QEMU then runs
  # the guest by itself or leaves it paused, and `cont` covers both.
  i=0; until hmp "info status" && grep 'VM status' /tmp/mon.log | tail -n 1 | grep -v inmigrate | grep -q .; do
    i=$((i + 1)); kill -0 $qemu 2>/dev/null || break; [ $i -lt 600 ] || break
  done
  hmp cont
  sleep 2
  if ! kill -0 $qemu 2>/dev/null; then verdict=reset
  elif ticks_advance /tmp/qclone.console && kill -0 $qemu 2>/dev/null; then verdict=healthy
  elif kill -0 $qemu 2>/dev/null; then verdict=stalled
  else verdict=reset
  fi
  case $verdict in healthy) healthy=$((healthy + 1)) ;; reset) resets=$((resets + 1)) ;; *) stalled=$((stalled + 1)) ;; esac
  echo "QEMU-RESTORES restore $n: $verdict; last tick: $(grep '^tick' /tmp/qclone.console | tail -n 1)"
  [ $verdict = healthy ] || { echo "QEMU-RESTORES   QEMU said: $(cat /tmp/qemu.log)"; tail -n 15 /tmp/qclone.console; }
  stop_qemu
  : > /tmp/mon.log
done
echo "QEMU-RESTORES-SUMMARY restores=$n healthy=$healthy resets=$resets stalled=$stalled host-kernel=$(uname -r) npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null || echo -)"
[ $n -eq $healthy ]
