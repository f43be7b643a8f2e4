#!/usr/bin/env bash
# build-guest-image.sh - build the Stratus test guest: a small, self-contained, BIOS-bootable
# raw disk image (the kind of file a user uploads to the image service and boots from a volume).
#
# USAGE
#   build-guest-image.sh OUTDIR            (OUTDIR is created; default when omitted: /tmp/stratus-guest)
#
# WHAT IT BUILDS (all in OUTDIR). Cached: when every output below is already in OUTDIR (and was built
# with the same kernel command line), the script returns at once; REFRESH=1 rebuilds every image from
# scratch (boot counters reset) and downloads the .debs again.
#   stratus-guest.raw           48 MiB raw disk. Sector 0: MBR with GRUB's boot.img. Sectors 1..:
#                               GRUB i386-pc core.img (its boot commands are embedded in it:
#                               linux16/initrd16/boot, no grub.cfg, no menu, no timeout).
#                               Partition 1 (from 1 MiB, type 0x83, active): ext4, label "stratus-root",
#                               holding /boot/vmlinuz, /boot/initrd.img and a busybox root filesystem.
#                               SeaBIOS boots it; no -kernel/-initrd needed.
#   stratus-guest-poweroff.raw  the same image plus the file /poweroff: it powers off after READY.
#   stratus-guest.qcow2         compressed qcow2 of stratus-guest.raw (only when qemu-img is present).
#   vmlinuz, initrd.img,        the same kernel and initramfs, and the kernel command line baked
#   cmdline.txt                 into core.img, for direct-kernel-boot tests (-kernel/-initrd/-append).
#   build-info.txt, SHA256SUMS  package versions, sizes, boot command line; checksums.
#   debs/                       downloaded .debs, reused on re-runs (set DEB_CACHE to share them).
#
# WHAT THE GUEST DOES (serial console ttyS0; lines are a contract for tests, see README.md)
#   STRATUS-GUEST-BOOTLOADER ...           printed by GRUB
#   STRATUS-GUEST-BOOTED kernel=... uptime=...          first line from the initramfs
#   STRATUS-GUEST-ROOT dev=/dev/vda1 label=stratus-root mode=rw
#   STRATUS-GUEST-DISK-SIZE dev=vda bytes=N            size of the disk holding the root fs
#   STRATUS-GUEST-BOOT-COUNT boot-count=N file=/var/lib/stratus/boot-count
#                               (incremented and synced on every boot; a line is also appended to
#                               /var/log/stratus-boot.log)
#   STRATUS-GUEST-NET iface=eth0 mac=... ip=A.B.C.D/P | ip=none | STRATUS-GUEST-NET none
#                               (udhcpc on every NIC in parallel; waits at most ~DHCP_TRIES+1 s)
#   STRATUS-GUEST-READY boot-count=N uptime=...
#   then: if /poweroff exists on the root fs (or stratus.poweroff is on the kernel command line):
#         STRATUS-GUEST-POWEROFF reason=... ; remount / read-only; power off.
#         otherwise: STRATUS-GUEST-HEARTBEAT seq=N uptime=... disk=ok|error every 5 s, forever
#         (each heartbeat is appended to /var/log/stratus-heartbeat.log on the disk and synced).
#   An ACPI power-button press (virsh shutdown, QEMU system_powerdown) gives a clean poweroff.
#
# DEPENDENCIES (Debian 12 package names; the script checks them and says what is missing)
#   bash, coreutils, gzip           (always present)
#   dpkg (dpkg-deb), apt (apt-get download; not needed when KERNEL_DEB and BUSYBOX_DEB are given)
#   e2fsprogs >= 1.43               (mke2fs -d: fills the ext4 fs from a directory, no mount)
#   grub-common, grub-pc-bin        (grub-mkimage, grub-fstest; i386-pc modules, boot.img)
#   qemu-utils                      (optional: qemu-img, for the qcow2 output)
#   Guest contents come from .debs that are downloaded and unpacked, never installed:
#   linux-image-<version>-cloud-amd64 (what linux-image-cloud-amd64 points to) and busybox-static.
#   Install the tools:  apt-get install --no-install-recommends e2fsprogs grub-common grub-pc-bin
#
# WHY GRUB (and not syslinux/extlinux)
#   Everything is written into a plain file: mke2fs -d fills the ext4 partition at an offset,
#   grub-mkimage makes core.img with the boot commands embedded, and dd puts boot.img (MBR code) and
#   core.img (post-MBR gap) in place - the layout grub-bios-setup would write, so no device, loop or
#   mount is needed. extlinux can only be installed into a mounted fs; syslinux (mtools) works
#   without a mount but only on FAT, which would need a second partition (or vfat in the guest).
#   One ext4 partition holding /boot and / is the layout of common cloud images.
#   linux16 (not linux): with GRUB's 32-bit "linux" loader the relocator copied the kernel's 51 MiB
#   init_size buffer with `rep movsb` just before starting it - 2.4 s of TCG time at load 7, about
#   10 s at load 10 on a 2-core host. linux16 loads the kernel at 1 MiB in place (as QEMU -kernel
#   does) and that copy disappears.
#
# PRIVILEGES
#   Needs no mount, no loop device, no root, no /dev access: every step writes into a regular file
#   (mke2fs -E offset=..., dd conv=notrunc). Works in containers that refuse `mount -o loop`.
#   Root is only needed if apt lists are missing (it then runs `apt-get update`). Built as non-root,
#   the files inside the ext4 fs belong to the builder's uid (harmless: the guest runs as root).
#
# TIME
#   4-20 s with cached .debs on 2 shared cores (load 5-9); about 9 s including the ~28 MB download.
#
# BOOT THE RESULT (QEMU TCG; console on stdio, Ctrl-A X quits)
#   qemu-system-x86_64 -accel tcg -m 256 -nographic \
#     -drive file=OUTDIR/stratus-guest.raw,format=raw,if=virtio \
#     -nic user,model=virtio-net-pci
#   Non-interactive, console to a file (what tests use):
#   qemu-system-x86_64 -accel tcg -m 256 -display none -no-user-config -no-reboot \
#     -serial file:console.log -drive file=OUTDIR/stratus-guest.raw,format=raw,if=virtio,cache=writeback \
#     -nic user,model=virtio-net-pci
#   (-nographic -serial file:console.log works too; -nographic -serial stdio does not.)
#   From NBD: -drive file=nbd://127.0.0.1:10809/vol0,format=raw,if=virtio,cache=none
#   (qcow2: format=qcow2). Boot-tested on virtio-blk (machines pc and q35). Drivers for virtio-scsi,
#   NVMe (built in) and PIIX IDE (machine pc) are included but were not boot-tested; AHCI/SATA
#   (q35 "-hda") cannot work: the Debian cloud kernel has no AHCI driver. BIOS boot only (no UEFI).
#
# ENVIRONMENT (all optional)
#   IMAGE_SIZE_MB=48      disk size in MiB (>= 32; the fs holds ~22 MB)
#   KERNEL_PKG=...        kernel package (default: what linux-image-cloud-amd64 depends on)
#   KERNEL_DEB=/x.deb     use this kernel .deb, no download;  BUSYBOX_DEB=/y.deb likewise
#   DEB_CACHE=DIR         where .debs are kept (default OUTDIR/debs)
#   REFRESH=1             rebuild even when the outputs exist, and download the .debs again
#   DHCP_TRIES=3          udhcpc discover attempts, 1 s apart, per NIC (0 disables DHCP)
#   EXTRA_CMDLINE=...     appended to the kernel command line baked into core.img
#   QCOW2=0               skip the qcow2 output
set -euo pipefail

OUT=${1:-/tmp/stratus-guest}
IMAGE_SIZE_MB=${IMAGE_SIZE_MB:-48}
DHCP_TRIES=${DHCP_TRIES:-3}
EXTRA_CMDLINE=${EXTRA_CMDLINE:-}
QCOW2=${QCOW2:-1}
REFRESH=${REFRESH:-0}
GRUB_DIR=${GRUB_DIR:-/usr/lib/grub/i386-pc}
LABEL=stratus-root
PART_START=2048                       # sectors; the 1 MiB gap before it holds GRUB's core.img
CMDLINE="root=LABEL=$LABEL console=ttyS0,115200n8 quiet stratus.dhcp_tries=$DHCP_TRIES $EXTRA_CMDLINE"
CMDLINE=${CMDLINE% }

log() { echo "build-guest-image: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Cached: a previous complete build (SHA256SUMS is written last) with the same command line is kept.
SCRIPT_SUM=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
if [[ $REFRESH != 1 && -f $OUT/SHA256SUMS && -f $OUT/cmdline.txt ]] &&
   [[ $(cat "$OUT/cmdline.txt") == "$CMDLINE" ]] &&
   [[ $(cat "$OUT/script.sha256" 2>/dev/null) == "$SCRIPT_SUM" ]]; then
  cached=1
  for f in stratus-guest.raw stratus-guest-poweroff.raw vmlinuz initrd.img build-info.txt; do
    [[ -f $OUT/$f ]] || cached=0
  done
  if [[ $QCOW2 == 1 ]] && command -v qemu-img >/dev/null && [[ ! -f $OUT/stratus-guest.qcow2 ]]; then cached=0; fi
  if ((cached)); then log "up to date: $OUT (REFRESH=1 rebuilds)"; exit 0; fi
fi

# ---------------------------------------------------------------------------------------------
# 0. Preconditions
# ---------------------------------------------------------------------------------------------
if ! [[ $IMAGE_SIZE_MB =~ ^[0-9]+$ ]] || (( IMAGE_SIZE_MB < 32 )); then die "IMAGE_SIZE_MB must be >= 32"; fi
missing=()
for t in dpkg-deb mke2fs grub-mkimage gzip dd; do command -v "$t" >/dev/null || missing+=("$t"); done
for f in boot.img diskboot.img kernel.img biosdisk.mod ext2.mod linux16.mod; do
  [[ -f $GRUB_DIR/$f ]] || missing+=("$GRUB_DIR/$f")
done
if ((${#missing[@]})); then
  die "missing: ${missing[*]}
  install: apt-get install --no-install-recommends dpkg e2fsprogs grub-common grub-pc-bin"
fi
mke2fs -V 2>&1 | awk '/^mke2fs/{split($2,v,"."); exit !(v[1]>1 || (v[1]==1 && v[2]>=43))}' ||
  die "mke2fs >= 1.43 is needed (for -d)"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEB_CACHE=${DEB_CACHE:-$OUT/debs}
mkdir -p "$DEB_CACHE"
WORK=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------------------------------------
# 1. Fetch the kernel and busybox .debs (apt-get download; cached; never installed)
# ---------------------------------------------------------------------------------------------
APT_UPDATED=0
apt_has() { apt-cache show "$1" >/dev/null 2>&1; }
apt_ready() {   # make sure apt knows package $1, running apt-get update once if we are root
  apt_has "$1" && return 0
  if ((APT_UPDATED == 0)) && [[ $(id -u) == 0 ]]; then
    log "apt does not know $1; running apt-get update"
    apt-get update -qq >&2 || true
    APT_UPDATED=1
    apt_has "$1" && return 0
  fi
  die "apt cannot find $1 (run apt-get update, or pass KERNEL_DEB/BUSYBOX_DEB)"
}
newest() { local f; for f in "$@"; do if [[ -e $f ]]; then echo "$f"; fi; done | sort -V | tail -n 1; }   # newest existing file
newest_cached() { newest "$DEB_CACHE"/"$1"_*.deb; }
fetch_deb() {   # fetch_deb PACKAGE -> prints the path of its .deb in DEB_CACHE
  local pkg=$1 deb
  deb=$(newest_cached "$pkg")
  if [[ -z $deb || $REFRESH == 1 ]]; then
    apt_ready "$pkg"
    local sandbox=()
    [[ $(id -u) == 0 ]] && sandbox=(-o APT::Sandbox::User=root)
    log "downloading $pkg"
    (cd "$DEB_CACHE" && apt-get download -q "${sandbox[@]}" "$pkg" >&2) || die "apt-get download $pkg failed"
    deb=$(newest_cached "$pkg")
  fi
  [[ -n $deb ]] || die "no .deb for $pkg in $DEB_CACHE"
  echo "$deb"
}

if [[ -z ${KERNEL_DEB:-} ]]; then
  if [[ -z ${KERNEL_PKG:-} ]]; then
    KERNEL_DEB=$(newest "$DEB_CACHE"/linux-image-*-cloud-amd64_*.deb)
    if [[ -z $KERNEL_DEB || $REFRESH == 1 ]]; then
      apt_ready linux-image-cloud-amd64
      KERNEL_PKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
      [[ -n $KERNEL_PKG ]] || die "cannot resolve linux-image-cloud-amd64"
      KERNEL_DEB=$(fetch_deb "$KERNEL_PKG")
    fi
  else
    KERNEL_DEB=$(fetch_deb "$KERNEL_PKG")
  fi
fi
BUSYBOX_DEB=${BUSYBOX_DEB:-$(fetch_deb busybox-static)}
[[ -f $KERNEL_DEB && -f $BUSYBOX_DEB ]] || die "kernel or busybox .deb missing"
log "kernel:  $(basename "$KERNEL_DEB")"
log "busybox: $(basename "$BUSYBOX_DEB")"

X=$WORK/x
mkdir -p "$X/k" "$X/bb"
dpkg-deb -x "$KERNEL_DEB" "$X/k"
dpkg-deb -x "$BUSYBOX_DEB" "$X/bb"
MODROOT=$(newest "$X"/k/lib/modules/* "$X"/k/usr/lib/modules/*)
[[ -d $MODROOT ]] || die "no modules directory in $KERNEL_DEB"
KVER=$(basename "$MODROOT")
VMLINUZ=$(newest "$X"/k/boot/vmlinuz-* "$X"/k/usr/lib/linux/vmlinuz-*)
[[ -f $VMLINUZ ]] || VMLINUZ=$MODROOT/vmlinuz
[[ -f $VMLINUZ ]] || die "no vmlinuz in $KERNEL_DEB"
BUSYBOX=$X/bb/bin/busybox
[[ -x $BUSYBOX ]] || die "no bin/busybox in $BUSYBOX_DEB"

# ---------------------------------------------------------------------------------------------
# 2. Kernel modules for the initramfs. The .deb has no modules.dep (depmod runs at install time),
#    so dependencies are read from each module's .modinfo "depends=" string.
# ---------------------------------------------------------------------------------------------
declare -A MODFILE=() SEEN=()
while IFS= read -r f; do
  n=${f##*/}; n=${n%%.ko*}; n=${n//-/_}
  MODFILE[$n]=$f
done < <(find "$MODROOT" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
BUILTIN=$(sed 's,.*/,,; s,\.ko$,,; s,-,_,g' "$MODROOT/modules.builtin" 2>/dev/null || true)
ORDER=()
mod_cat() { case $1 in *.xz) xz -dc "$1";; *.zst) zstd -dc "$1";; *.gz) gzip -dc "$1";; *) cat "$1";; esac; }
resolve() {     # depth-first: dependencies first, each module once
  local m=${1//-/_} d deps
  [[ -n ${SEEN[$m]:-} ]] && return 0
  SEEN[$m]=1
  if [[ -z ${MODFILE[$m]:-} ]]; then
    grep -qx "$m" <<<"$BUILTIN" || log "note: module $m not found (not built for this kernel)"
    return 0
  fi
  deps=$(mod_cat "${MODFILE[$m]}" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n 1)
  for d in ${deps//,/ }; do resolve "$d"; done
  ORDER+=("$m")
}
# Always loaded: virtio PCI transport, virtio disks (blk + scsi), virtio NIC, ACPI power button.
for m in virtio_pci virtio_blk virtio_scsi sd_mod virtio_net button evdev; do resolve "$m"; done
BASE_ORDER=("${ORDER[@]}")
# Loaded only when the root fs is not found and an IDE controller exists (machine "pc", -hda).
ORDER=()
resolve ata_piix
IDE_ORDER=("${ORDER[@]}")

INITRD=$WORK/initrd
mkdir -p "$INITRD"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,newroot,lib/modules}
cp "$BUSYBOX" "$INITRD/bin/busybox"
for m in "${BASE_ORDER[@]}" "${IDE_ORDER[@]}"; do mod_cat "${MODFILE[$m]}" > "$INITRD/lib/modules/$m.ko"; done
printf '%s\n' "${BASE_ORDER[@]}" > "$INITRD/lib/modules/base.order"
printf '%s\n' "${IDE_ORDER[@]}" > "$INITRD/lib/modules/ide.order"

cat > "$INITRD/init" <<'INIT'
#!/bin/busybox sh
# Stratus guest, stage 1 (initramfs): load disk/NIC drivers, find the root fs by label,
# print the boot marker and disk size, then switch_root to /sbin/stratus-init on the disk.
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
exec </dev/console >/dev/console 2>&1
up() { cut -d' ' -f1 /proc/uptime; }
arg() { for a in $(cat /proc/cmdline); do case $a in "$1"=*) echo "${a#*=}"; return 0;; esac; done; return 1; }

echo "STRATUS-GUEST-BOOTED kernel=$(uname -r) uptime=$(up)"

load() {
  while read -r m; do
    [ -n "$m" ] && [ ! -d "/sys/module/$m" ] || continue
    insmod "/lib/modules/$m.ko" 2>/dev/null || echo "STRATUS-GUEST-WARN insmod $m failed"
  done < "/lib/modules/$1.order"
}
# ext2/3/4 superblock at byte 1024: magic 0xEF53 at +0x38, volume label (16 bytes) at +0x78
is_ext() { [ "$(dd if="$1" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')" = "53ef" ]; }
label_of() { dd if="$1" bs=1 skip=1144 count=16 2>/dev/null | tr -d '\000'; }
find_root() {
  case $ROOT in
    LABEL=*)
      for pat in 'vd*' 'sd*' 'nvme*' 'xvd*' 'hd*'; do
        for p in /sys/class/block/$pat; do
          [ -e "$p/partition" ] || continue
          d=/dev/${p##*/}
          [ -b "$d" ] && is_ext "$d" && [ "$(label_of "$d")" = "${ROOT#LABEL=}" ] && { echo "$d"; return 0; }
        done
      done
      return 1;;
    /dev/*) [ -b "$ROOT" ] && echo "$ROOT";;
    *) return 1;;
  esac
}

ROOT=$(arg root) || ROOT=LABEL=stratus-root
INIT=$(arg init) || INIT=/sbin/stratus-init
load base
i=0; dev=
while :; do
  dev=$(find_root) && break
  i=$((i + 1))
  if [ $i = 10 ] && grep -q '^0x0101' /sys/bus/pci/devices/*/class 2>/dev/null; then load ide; fi
  if [ $((i % 100)) = 0 ]; then
    echo "STRATUS-GUEST-ERROR root $ROOT not found after $((i / 10)) s; block devices: $(ls /sys/class/block | tr '\n' ' ')"
  fi
  sleep 0.1
done

mode=rw
mount -t ext4 -o rw,noatime "$dev" /newroot 2>/dev/null || { mode=ro; mount -t ext4 -o ro "$dev" /newroot; } || {
  echo "STRATUS-GUEST-ERROR cannot mount $dev"; while :; do sleep 3600; done; }
echo "STRATUS-GUEST-ROOT dev=$dev label=$(label_of "$dev") mode=$mode"
part=${dev#/dev/}
disk=$(basename "$(dirname "$(readlink -f "/sys/class/block/$part")")")
echo "STRATUS-GUEST-DISK-SIZE dev=$disk bytes=$(blockdev --getsize64 "/dev/$disk")"

if [ ! -x "/newroot$INIT" ]; then
  echo "STRATUS-GUEST-ERROR $INIT missing on $dev"; while :; do sleep 3600; done
fi
for m in dev proc sys; do mount --move "/$m" "/newroot/$m"; done
exec switch_root -c /dev/console /newroot "$INIT"
INIT
chmod 755 "$INITRD/init"
(cd "$INITRD" && find . | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9 -n > "$WORK/initrd.img"

# ---------------------------------------------------------------------------------------------
# 3. Root filesystem tree (busybox + stage-2 init + kernel + initramfs)
# ---------------------------------------------------------------------------------------------
R=$WORK/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,boot,dev,proc,sys,run,tmp,mnt,root,etc,var/lib/stratus,var/log}
chmod 1777 "$R/tmp"
cp "$BUSYBOX" "$R/bin/busybox"
while IFS= read -r a; do   # applet links, e.g. bin/sh -> /bin/busybox
  [[ -e $R/$a || -L $R/$a ]] || ln -s /bin/busybox "$R/$a"
done < <("$BUSYBOX" --list-full | grep -v '^bin/busybox$')
cp "$VMLINUZ" "$R/boot/vmlinuz"
cp "$WORK/initrd.img" "$R/boot/initrd.img"
echo stratus-guest > "$R/etc/hostname"
ln -s /run/resolv.conf "$R/etc/resolv.conf"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\n' > "$R/etc/group"
cat > "$R/etc/stratus-release" <<EOF
STRATUS_GUEST_IMAGE=1
KERNEL=$KVER
KERNEL_DEB=$(basename "$KERNEL_DEB")
BUSYBOX_DEB=$(basename "$BUSYBOX_DEB")
CMDLINE="$CMDLINE"
EOF

cat > "$R/etc/udhcpc.script" <<'DHCP'
#!/bin/sh
# udhcpc hook: configure $interface; record the address in /run/net.$interface
case $1 in
  deconfig) ip addr flush dev "$interface" 2>/dev/null; ip link set "$interface" up;;
  bound|renew)
    ip addr flush dev "$interface" 2>/dev/null
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface" 2>/dev/null && break; done
    : > /run/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /run/resolv.conf; done
    echo "$ip/${mask:-24}" > "/run/net.$interface";;
esac
exit 0
DHCP
chmod 755 "$R/etc/udhcpc.script"

cat > "$R/sbin/stratus-init" <<'STAGE2'
#!/bin/sh
# Stratus guest, stage 2: PID 1 on the disk's root fs. Counts boots on the disk, brings up
# networking (bounded), prints READY, then either powers off (/poweroff exists) or prints a
# heartbeat every 5 s. An ACPI power-button press powers off cleanly.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
exec </dev/console >/dev/console 2>&1
up() { cut -d' ' -f1 /proc/uptime; }
arg() { for a in $(cat /proc/cmdline); do case $a in "$1"=*) echo "${a#*=}"; return 0;; "$1") echo 1; return 0;; esac; done; return 1; }
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/class ] || mount -t sysfs sysfs /sys
[ -c /dev/null ] || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs -o mode=0755,size=8m tmpfs /run
mount -t tmpfs -o mode=1777,size=16m tmpfs /tmp
hostname -F /etc/hostname 2>/dev/null
ip link set lo up 2>/dev/null

poweroff_now() {
  echo "STRATUS-GUEST-POWEROFF reason=$1 uptime=$(up)"
  sync; mount -o remount,ro / 2>/dev/null; sync
  poweroff -f
}

# Persistence: a counter and a log line on the guest's own disk.
COUNT=/var/lib/stratus/boot-count
if mkdir -p /var/lib/stratus /var/log 2>/dev/null && touch "$COUNT" 2>/dev/null; then
  n=$(cat "$COUNT" 2>/dev/null); case $n in ''|*[!0-9]*) n=0;; esac
  n=$((n + 1))
  echo "$n" > "$COUNT.new" && mv "$COUNT.new" "$COUNT"
  echo "boot-count=$n uptime=$(up) kernel=$(uname -r)" >> /var/log/stratus-boot.log
  sync
  echo "STRATUS-GUEST-BOOT-COUNT boot-count=$n file=$COUNT"
else
  n=unknown
  echo "STRATUS-GUEST-BOOT-COUNT boot-count=unknown (root filesystem is read-only)"
fi

# ACPI power button (virsh shutdown / QEMU system_powerdown) -> clean poweroff.
for ev in /sys/class/input/event*; do
  [ "$(cat "$ev/device/name" 2>/dev/null)" = "Power Button" ] || continue
  ( dd if="/dev/input/${ev##*/}" of=/dev/null bs=24 count=1 2>/dev/null && poweroff_now acpi-power-button ) &
done

# Networking: DHCP on every NIC, in parallel, bounded (udhcpc -n: give up after the tries).
tries=$(arg stratus.dhcp_tries) || tries=3
nics=
for p in /sys/class/net/*; do
  i=${p##*/}; [ "$i" = lo ] && continue
  nics="$nics $i"
  ip link set "$i" up 2>/dev/null
  [ "$tries" -gt 0 ] 2>/dev/null && udhcpc -i "$i" -f -q -n -t "$tries" -T 1 -s /etc/udhcpc.script >"/run/udhcpc.$i.log" 2>&1 &
done
wait_nets() {   # until every NIC has an address, or about (tries + 1) s: udhcpc -n gives up by then
  for _ in $(seq 1 $((tries * 10 + 10))); do
    pending=0; for i in $nics; do [ -f "/run/net.$i" ] || pending=1; done
    [ $pending = 0 ] && return; sleep 0.1
  done; }
if [ -n "$nics" ]; then
  [ "$tries" -gt 0 ] 2>/dev/null && wait_nets
  for i in $nics; do
    echo "STRATUS-GUEST-NET iface=$i mac=$(cat "/sys/class/net/$i/address") ip=$(cat "/run/net.$i" 2>/dev/null || echo none)"
  done
else
  echo "STRATUS-GUEST-NET none"
fi

echo "STRATUS-GUEST-READY boot-count=$n uptime=$(up)"
if [ -e /poweroff ]; then poweroff_now poweroff-file; fi
if arg stratus.poweroff >/dev/null; then poweroff_now cmdline; fi
seq=0
while :; do
  sleep 5
  seq=$((seq + 1))
  # Each heartbeat is also written to the disk and synced, so a disk that fails shows here.
  if echo "seq=$seq uptime=$(up)" >> /var/log/stratus-heartbeat.log && sync; then disk=ok; else disk=error; fi
  echo "STRATUS-GUEST-HEARTBEAT seq=$seq uptime=$(up) disk=$disk"
done
STAGE2
chmod 755 "$R/sbin/stratus-init"

# ---------------------------------------------------------------------------------------------
# 4. GRUB core.img with the boot commands embedded (no grub.cfg, no grub-install, no mount).
#    The prefix "(,msdos1)" means "partition 1 of the disk the BIOS booted from", so the image
#    works as any BIOS drive number. "terminfo serial dumb" keeps escape codes out of the console
#    log. Output goes to serial only: with "console" too, SeaBIOS's serial redirection (active
#    under -nographic) echoes the VGA copy onto ttyS0 and garbles the line. linux16, not linux:
#    see WHY GRUB in the header.
# ---------------------------------------------------------------------------------------------
cat > "$WORK/early.cfg" <<EOF
serial --unit=0 --speed=115200
terminfo serial dumb
terminal_input serial
terminal_output serial
echo STRATUS-GUEST-BOOTLOADER grub loading /boot/vmlinuz from partition 1
linux16 /boot/vmlinuz $CMDLINE
initrd16 /boot/initrd.img
boot
EOF
grub-mkimage -O i386-pc -d "$GRUB_DIR" -o "$WORK/core.img" -c "$WORK/early.cfg" -p '(,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 linux16 boot echo serial terminal terminfo
CORE_SECTORS=$(( ($(stat -c %s "$WORK/core.img") + 511) / 512 ))
(( CORE_SECTORS < PART_START - 1 )) || die "core.img ($CORE_SECTORS sectors) does not fit before the partition"

# ---------------------------------------------------------------------------------------------
# 5. Assemble the disk: ext4 at 1 MiB (mke2fs -d, no mount), then MBR + boot code
# ---------------------------------------------------------------------------------------------
cat > "$WORK/mke2fs.conf" <<'EOF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	small = {
		inode_ratio = 16384
	}
EOF
# Features pinned (not the host's mke2fs.conf) so GRUB 2.06 can read the fs whatever e2fsprogs made it.
TOTAL_SECTORS=$(( IMAGE_SIZE_MB * 2048 ))
PART_SECTORS=$(( TOTAL_SECTORS - PART_START ))

le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
chs() {     # LBA -> 3 CHS bytes for a 255-head, 63-sector geometry (0xfe 0xff 0xff past cylinder 1023)
  local c=$(($1 / (255 * 63))) h=$(($1 / 63 % 255)) s=$(($1 % 63 + 1))
  ((c > 1023)) && { printf '\\xfe\\xff\\xff'; return; }
  printf '\\x%02x\\x%02x\\x%02x' "$h" $((s | (c >> 8) << 6)) $((c & 255))
}
make_disk() {   # make_disk IMAGE ROOTDIR
  local img=$1 root=$2
  rm -f "$img"
  truncate -s "${IMAGE_SIZE_MB}M" "$img"
  MKE2FS_CONFIG=$WORK/mke2fs.conf mke2fs -q -F -t ext4 -m 0 -N 2048 -L "$LABEL" \
    -E "offset=$((PART_START * 512)),nodiscard,root_owner=0:0" -d "$root" "$img" "$((PART_SECTORS / 2))k"
  # MBR: GRUB boot.img code (first 440 bytes), disk signature "STRA", one active Linux partition.
  dd if="$GRUB_DIR/boot.img" of="$img" bs=440 count=1 conv=notrunc status=none
  printf 'STRA\0\0' | dd of="$img" bs=1 seek=440 conv=notrunc status=none
  # shellcheck disable=SC2059  # the format string is the escaped partition entry itself
  printf "\\x80$(chs $PART_START)\\x83$(chs $((TOTAL_SECTORS - 1)))$(le32 $PART_START)$(le32 $PART_SECTORS)" |
    dd of="$img" bs=1 seek=446 conv=notrunc status=none
  printf '\x55\xaa' | dd of="$img" bs=1 seek=510 conv=notrunc status=none
  # core.img right after the MBR; boot.img's default pointer (LBA 1) and diskboot's blocklist
  # (LBA 2, length set by grub-mkimage) already match this layout, so no grub-bios-setup is needed.
  dd if="$WORK/core.img" of="$img" bs=512 seek=1 conv=notrunc status=none
}
make_disk "$WORK/stratus-guest.raw" "$R"
touch "$R/poweroff"
make_disk "$WORK/stratus-guest-poweroff.raw" "$R"
rm -f "$R/poweroff"

# ---------------------------------------------------------------------------------------------
# 6. Self-checks (no boot): partition table, fs, and GRUB's own ext4 reader on the image
# ---------------------------------------------------------------------------------------------
img=$WORK/stratus-guest.raw
[[ $(dd if="$img" bs=1 skip=510 count=2 status=none | od -An -tx1 | tr -d ' \n') == 55aa ]] || die "no MBR signature"
if command -v e2fsck >/dev/null; then
  e2fsck -fn "$img?offset=$((PART_START * 512))" >"$WORK/fsck.log" 2>&1 || { cat "$WORK/fsck.log" >&2; die "e2fsck failed"; }
fi
if command -v grub-fstest >/dev/null; then
  grub-fstest "$img" cmp '(loop0,msdos1)/boot/vmlinuz' "$R/boot/vmlinuz" ||
    die "GRUB cannot read /boot/vmlinuz from the image"
  grub-fstest "$img" cmp '(loop0,msdos1)/boot/initrd.img' "$R/boot/initrd.img" ||
    die "GRUB cannot read /boot/initrd.img from the image"
fi

# ---------------------------------------------------------------------------------------------
# 7. Publish
# ---------------------------------------------------------------------------------------------
if [[ $QCOW2 == 1 ]] && command -v qemu-img >/dev/null; then
  qemu-img convert -c -f raw -O qcow2 "$img" "$WORK/stratus-guest.qcow2"
fi
cp "$VMLINUZ" "$WORK/vmlinuz"
echo "$CMDLINE" > "$WORK/cmdline.txt"
used_kib=$(du -sk --apparent-size "$R" | cut -f1)
{
  echo "built:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel:       $KVER ($(basename "$KERNEL_DEB"))"
  echo "busybox:      $(basename "$BUSYBOX_DEB")"
  echo "grub:         $(grub-mkimage --version 2>/dev/null | head -n 1)"
  echo "disk:         ${IMAGE_SIZE_MB} MiB raw, MBR, partition 1 ext4 label=$LABEL at sector $PART_START ($PART_SECTORS sectors)"
  echo "core.img:     $CORE_SECTORS sectors at LBA 1"
  echo "root fs data: ${used_kib} KiB (vmlinuz $(stat -c %s "$VMLINUZ"), initrd.img $(stat -c %s "$WORK/initrd.img") bytes)"
  echo "modules:      ${BASE_ORDER[*]} | ide: ${IDE_ORDER[*]}"
  echo "cmdline:      $CMDLINE"
} > "$WORK/build-info.txt"
echo "$SCRIPT_SUM" > "$WORK/script.sha256"
rm -f "$OUT/SHA256SUMS"   # marks the outputs as incomplete until the new set is in place (see Cached)
for f in stratus-guest.raw stratus-guest-poweroff.raw stratus-guest.qcow2 vmlinuz initrd.img cmdline.txt build-info.txt script.sha256; do
  [[ -f $WORK/$f ]] && mv -f "$WORK/$f" "$OUT/$f"
done
sums=(stratus-guest.raw stratus-guest-poweroff.raw vmlinuz initrd.img)
[[ -f $OUT/stratus-guest.qcow2 ]] && sums+=(stratus-guest.qcow2)
(cd "$OUT" && sha256sum "${sums[@]}" > SHA256SUMS)
log "done: $OUT"
cat "$OUT/build-info.txt" >&2
