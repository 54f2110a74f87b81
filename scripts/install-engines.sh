#!/usr/bin/env bash
# Installs the database engines the tests run for real (Debian packages), when missing.
# Needs root (or sudo) the first time; does nothing when everything is there.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# a one-node Ceph (mon + memstore OSD) behind RGW: the S3 endpoint the tests start (scripts/rgw.sh)
command -v radosgw >/dev/null 2>&1 || need+=(radosgw)
command -v ceph-mon >/dev/null 2>&1 || need+=(ceph-mon)
command -v ceph-osd >/dev/null 2>&1 || need+=(ceph-osd)

if [ ${#need[@]} -eq 0 ]; then
  echo "engines present: $(redis-server --version | cut -d' ' -f1-3), $(etcd --version | head -1), $(radosgw --version | cut -d' ' -f1-3)"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# the Debian packages may start a system redis/etcd; the tests start their own servers
for unit in redis-server etcd ceph-mon.target ceph-osd.target ceph-radosgw.target ceph.target; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done
echo "engines installed: $(redis-server --version | cut -d' ' -f1-3), $(etcd --version | head -1), $(radosgw --version | cut -d' ' -f1-3)"
