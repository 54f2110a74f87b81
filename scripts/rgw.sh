#!/usr/bin/env bash
# A throw-away S3 endpoint: Ceph RGW over a one-node memstore cluster (one mon, one OSD,
# no auth between daemons, pool size 1), with a second storage class (COLD) and SSE-KMS
# keys of its own. Used by the tests of the s3 storage driver.
#
#   scripts/rgw.sh start DIR PORT   -> prints "endpoint access-key secret-key" when ready
#   scripts/rgw.sh stop DIR         -> stops the daemons and removes DIR
#
# Every daemon binds 127.0.0.1 only. The mon listens on PORT+1. Data lives in memory.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2; }

stop() {
  for pidfile in "$dir"/run/*.pid; do
    [ -f "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    alive=0
    for pidfile in "$dir"/run/*.pid; do
      [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && alive=1
    done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for pidfile in "$dir"/run/*.pid; do
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$dir"
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "unknown command: $cmd" >&2; exit 2; }

port=${3:?PORT missing}
monport=$((port + 1))
for bin in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph; do
  command -v "$bin" >/dev/null 2>&1 || { echo "$bin not installed (scripts/install-engines.sh installs it)" >&2; exit 3; }
done

rm -rf "$dir"
mkdir -p "$dir"/{run,log,mon,osd/ceph-0,rgw}
dir=$(cd "$dir" && pwd)
fsid=$(cat /proc/sys/kernel/random/uuid)
conf="$dir/ceph.conf"
cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$monport]
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
auth allow insecure global id reclaim = true
# radosgw asks for a secure mon connection by default, which needs cephx
ms mon client mode = crc secure
ms client mode = crc secure
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
# the mon's own store is tiny: do not refuse to start on a disk that is 95% full (the default)
mon data avail crit = 1
osd objectstore = memstore
memstore device bytes = 8589934592
osd max object name len = 460
osd max object namespace len = 64
run dir = $dir/run
log file = $dir/log/\$name.log
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
keyring = $dir/keyring
ms bind ipv6 = false
mon data = $dir/mon/\$name
osd data = $dir/osd/\$cluster-\$id
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$port tcp_nodelay=1
rgw data = $dir/rgw
rgw dns name = 127.0.0.1
# SSE-KMS over plain HTTP, with keys from this file (RGW's "testing" backend): the tests of
# the s3 driver's serverSideEncryption ask for key lockstep-test-key
rgw crypt require ssl = false
rgw crypt s3 kms backend = testing
rgw crypt s3 kms encryption keys = lockstep-test-key=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
EOF

trap 'echo "rgw did not start; logs in $dir/log" >&2' ERR
c() { timeout 60 "$@" -c "$conf"; }

ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$monport]" --fsid "$fsid" "$dir/monmap" >/dev/null
c ceph-mon --mkfs -i a --monmap "$dir/monmap"
c ceph-mon -i a
osd=$(c ceph --connect-timeout 30 osd create)
[ "$osd" = 0 ] || { echo "unexpected osd id $osd" >&2; exit 1; }
c ceph-osd -i 0 --mkfs >/dev/null 2>&1
c ceph-osd -i 0 2>>"$dir/log/osd-start.log"
c radosgw -n client.rgw
access=lockstep-test-access
secret=lockstep-test-secret-0123456789
# the first admin call waits for the rgw pools to exist
c radosgw-admin user create --uid=lockstep --display-name=lockstep \
  --access-key="$access" --secret-key="$secret" >/dev/null
# a second storage class, COLD, for the tests of the s3 driver's storageClass; radosgw reads
# the zone's placement when it starts, so it is started again
c radosgw-admin zonegroup placement add --rgw-zonegroup default --placement-id default-placement --storage-class COLD >/dev/null
c radosgw-admin zone placement add --rgw-zone default --placement-id default-placement --storage-class COLD --data-pool default.rgw.cold.data >/dev/null
rgwpid=$(cat "$dir/run/client.rgw.pid")
kill "$rgwpid"
for _ in $(seq 100); do
  kill -0 "$rgwpid" 2>/dev/null || break
  sleep 0.1
done
kill -9 "$rgwpid" 2>/dev/null || true
c radosgw -n client.rgw
for _ in $(seq 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "http://127.0.0.1:$port $access $secret"
    exit 0
  fi
  sleep 0.1
done
echo "rgw did not answer on port $port" >&2
exit 1
