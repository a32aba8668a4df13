#!/usr/bin/env bash
# Builds the lungwatch appliance: a bootable x86-64 disk image (raw and qcow2) with a
# minimal Debian, a kernel, GRUB for BIOS and UEFI (Secure Boot through Debian's signed
# shim and GRUB), lungwatch installed by the project's install.sh, an SMB share for the
# drop folder and the first-boot set-up. The image needs no network when it runs.
#
#   sudo image/build.sh [options]
#
# Options:
#   --binary FILE      the lungwatch release binary (default target/release/lungwatch; this
#                      script never runs cargo)
#   --out DIR          where the images go (default image/out)
#   --mirror URL       Debian mirror (default http://deb.debian.org/debian)
#   --security URL     Debian security mirror (default http://deb.debian.org/debian-security)
#   --suite NAME       Debian release (default bookworm)
#   --extra-packages LIST   more Debian packages, comma-separated (e.g. firmware-bnx2 with
#                      --components main,non-free-firmware)
#   --components LIST  Debian components (default main)
#   --data-size MIB    size of the data partition in the image (default 2048); it grows to
#                      the end of the disk at boot
#   --var-size MIB     size of the /var partition (default 1024)
#   --no-qcow2         skip the qcow2 conversion
#   --no-strip         install the binary with its debug info (line tables: about 5 times
#                      larger); by default the image gets a copy without it (strip --strip-debug,
#                      function names in backtraces stay)
#   --base-cache FILE  reuse the Debian tree from FILE (a tar) when it exists, else save it
#                      there: for quick rebuilds while working on the image; a release build
#                      leaves it out so it gets the current packages
#
# Needs, on the Debian build machine: mmdebstrap, fdisk (sfdisk), e2fsprogs (>= 1.43, for
# mkfs.ext4 -d), dosfstools, mtools, qemu-utils; network access to the Debian mirror.
# Loop devices and mounts of the image are not needed: every filesystem is built from a
# folder into a file and copied into the partitioned image.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
binary="$repo/target/release/lungwatch"
out="$here/out"
mirror="http://deb.debian.org/debian"
security="http://deb.debian.org/debian-security"
suite="bookworm"
components="main"
extra_packages=""
data_mib=2048
var_mib=1024
esp_mib=128
qcow2=1
strip_debug=1
base_cache=""

die() { echo "build.sh: error: $*" >&2; exit 1; }
say() { echo "build.sh: [$(date +%T)] $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || die "--binary needs a file"; binary="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a folder"; out="$2"; shift 2 ;;
    --mirror) [ $# -ge 2 ] || die "--mirror needs a URL"; mirror="$2"; shift 2 ;;
    --security) [ $# -ge 2 ] || die "--security needs a URL"; security="$2"; shift 2 ;;
    --suite) [ $# -ge 2 ] || die "--suite needs a name"; suite="$2"; shift 2 ;;
    --components) [ $# -ge 2 ] || die "--components needs a list"; components="$2"; shift 2 ;;
    --extra-packages) [ $# -ge 2 ] || die "--extra-packages needs a list"; extra_packages="$2"; shift 2 ;;
    --data-size) [ $# -ge 2 ] || die "--data-size needs MiB"; data_mib="$2"; shift 2 ;;
    --var-size) [ $# -ge 2 ] || die "--var-size needs MiB"; var_mib="$2"; shift 2 ;;
    --no-qcow2) qcow2=0; shift ;;
    --no-strip) strip_debug=0; shift ;;
    --base-cache) [ $# -ge 2 ] || die "--base-cache needs a file"; base_cache="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
if ! [[ "$data_mib" =~ ^[0-9]+$ ]] || [ "$data_mib" -lt 1536 ]; then
  die "--data-size must be at least 1536 MiB (lungwatch pauses with under 1 GiB free)"
fi
if ! [[ "$var_mib" =~ ^[0-9]+$ ]] || [ "$var_mib" -lt 512 ]; then die "--var-size must be at least 512 MiB"; fi

# ---- preflight -----------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap and chroot need it): sudo $0"
for tool in mmdebstrap sfdisk mkfs.ext4 e2fsck mkfs.vfat mcopy mmd qemu-img chroot ldd; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool is missing: apt-get install mmdebstrap fdisk e2fsprogs dosfstools mtools qemu-utils"
done
[ -f "$binary" ] ||
  die "no lungwatch binary at $binary: build it first with 'cargo build --release' (this script does not run cargo), or pass --binary FILE"
[ -x "$binary" ] || die "$binary is not executable"
[ "$(head -c 4 "$binary" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ] || die "$binary is not an ELF executable"
# e_machine (offset 18, little endian) 0x3e = x86-64: the image is x86-64.
[ "$(od -An -tx1 -j18 -N2 "$binary" | tr -d ' \n')" = "3e00" ] || die "$binary is not an x86-64 binary"
# The image has glibc, libgcc and libstdc++ (the C++ codecs) and nothing else lungwatch
# could link against: refuse anything more.
extra_libs="$(ldd "$binary" 2>&1 | grep -v 'statically linked\|not a dynamic executable' | awk '{print $1}' |
  grep -Ev '^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|lib(c|m|gcc_s|stdc\+\+|pthread|dl|rt)\.so\.[0-9]+)$' || true)"
[ -z "$extra_libs" ] || die "$binary needs shared libraries beyond glibc: $extra_libs"
for f in install.sh config/lungwatch.toml models/manifest.toml; do
  [ -f "$repo/$f" ] || die "$repo/$f is missing"
done

start_time=$SECONDS
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$out/work"
rootfs="$work/rootfs"

mounted=()
cleanup() {
  local m
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    m="${mounted[$i]}"
    umount -l "$m" 2>/dev/null || true
  done
}
trap cleanup EXIT
bind_chroot() {
  mount -t proc proc "$rootfs/proc" && mounted+=("$rootfs/proc")
  mount -t sysfs sysfs "$rootfs/sys" && mounted+=("$rootfs/sys")
  mount --bind /dev "$rootfs/dev" && mounted+=("$rootfs/dev")
  # An empty /run: install.sh then sees no running systemd and calls no systemctl start.
  mount -t tmpfs tmpfs "$rootfs/run" && mounted+=("$rootfs/run")
}
in_root() { chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

# ---- 1. minimal Debian -----------------------------------------------------------------
packages=(
  libc6 libgcc-s1 libstdc++6 systemd-sysv udev dbus libpam-systemd systemd-timesyncd systemd-resolved
  linux-image-amd64 initramfs-tools zstd grub-pc-bin
  e2fsprogs dosfstools fdisk cloud-guest-utils kmod
  iproute2 iputils-ping netbase openssh-server curl less nano procps tzdata
  samba nfs-kernel-server openssl
)
if [ -n "$extra_packages" ]; then IFS=, read -r -a more <<<"$extra_packages"; packages+=("${more[@]}"); fi
include="$(IFS=,; echo "${packages[*]}")"

# Left out of every package, now and in later upgrades (the rules stay in the image's
# /etc/dpkg/dpkg.cfg.d): documentation except licences, translations, and kernel drivers a
# headless CT analysis server never uses (sound, video capture, Wi-Fi, Bluetooth, staging,
# the large desktop GPU drivers, InfiniBand, ISDN, industrial sensors).
dpkgopts=(
  'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright'
  'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*'
  'path-exclude=/usr/share/locale/*' 'path-include=/usr/share/locale/locale.alias'
  'path-exclude=/usr/share/lintian/*'
)
for d in sound drivers/media drivers/net/wireless net/wireless net/mac80211 \
  drivers/bluetooth net/bluetooth drivers/staging drivers/gpu/drm/amd drivers/gpu/drm/radeon \
  drivers/gpu/drm/nouveau drivers/gpu/drm/i915 drivers/infiniband drivers/isdn drivers/iio; do
  dpkgopts+=("path-exclude=/lib/modules/*/kernel/$d/*")
done
dpkgargs=()
for o in "${dpkgopts[@]}"; do dpkgargs+=(--dpkgopt="$o"); done

rm -rf "$work"
mkdir -p "$work"
tar_opts=(--xattrs --xattrs-include='*' --numeric-owner)
if [ -n "$base_cache" ] && [ -f "$base_cache" ]; then
  say "debian: reusing $base_cache"
  mkdir "$rootfs"
  tar "${tar_opts[@]}" -C "$rootfs" -xpf "$base_cache"
else
  say "debian: mmdebstrap $suite from $mirror (${#packages[@]} packages and their dependencies)"
  # The hook runs the host's apt with mmdebstrap's config: the image's own resolv.conf
  # already points at systemd-resolved, which does not run in a chroot.
  # shellcheck disable=SC2016 # $1 and the variable are the hook's, expanded by its shell
  mmdebstrap --mode=root --variant=minbase --components="$components" --include="$include" \
    "${dpkgargs[@]}" \
    --customize-hook='mkdir -p "$1/var/cache/lungwatch-efi" && cd "$1/var/cache/lungwatch-efi" && APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get download -q shim-signed shim-helpers-amd64-signed grub-efi-amd64-signed' \
    "$suite" "$rootfs" \
    "deb $mirror $suite ${components//,/ }" \
    "deb $mirror $suite-updates ${components//,/ }" \
    "deb $security $suite-security ${components//,/ }" ||
    die "mmdebstrap failed (is $mirror reachable?)"
  if [ -n "$base_cache" ]; then tar "${tar_opts[@]}" -C "$rootfs" -cpf "$base_cache" .; fi
fi

# ---- 2. lungwatch, by the project's install.sh -------------------------------------------
bind_chroot
say "lungwatch: install.sh inside the image"
src="$rootfs/tmp/lungwatch-src"
mkdir -p "$src/config" "$src/models"
install -m 0755 "$repo/install.sh" "$src/install.sh"
install -m 0755 "$binary" "$src/lungwatch"
if [ "$strip_debug" -eq 1 ]; then
  command -v strip >/dev/null 2>&1 || die "strip is missing: apt-get install binutils, or pass --no-strip"
  strip --strip-debug "$src/lungwatch"
fi
install -m 0644 "$repo/config/lungwatch.toml" "$src/config/"
install -m 0644 "$repo"/models/*.onnx "$repo/models/manifest.toml" "$repo/models/MODEL_CARD.md" "$src/models/"
# --no-tls-cert: each box makes its own certificate at first boot (lungwatch-setup), so
# that no two appliances share a private key.
in_root /tmp/lungwatch-src/install.sh --binary /tmp/lungwatch-src/lungwatch --no-start --no-tls-cert
in_root systemctl is-enabled --quiet lungwatch.service ||
  die "install.sh did not enable lungwatch.service in the image"
version="$(in_root /usr/local/bin/lungwatch --version | awk '{print $NF}')"
[ -n "$version" ] || die "the installed lungwatch does not run inside the image"
say "lungwatch $version installed; checking its config and models inside the image"
in_root /usr/local/bin/lungwatch check --config /etc/lungwatch/lungwatch.toml ||
  die "lungwatch check failed inside the image"

# An update bundle for running boxes: what install.sh needs, laid out like a checkout.
say "lungwatch: update bundle"
bundle="lungwatch-$version"
rm -rf "${work:?}/$bundle"
mkdir -p "$work/$bundle/target/release"
cp -a "$src/install.sh" "$src/config" "$src/models" "$work/$bundle/"
cp -a "$src/lungwatch" "$work/$bundle/target/release/lungwatch"
tar -C "$work" -czf "$out/$bundle-update.tar.gz" "$bundle"
rm -rf "${work:?}/$bundle" "$src"

# ---- 3. the appliance layer ------------------------------------------------------------
say "appliance: configuration, accounts, services"
# Our files (units, share, journald, time, network, lungwatch-setup), owned by root.
cp -r --no-preserve=ownership "$here/rootfs/." "$rootfs/"
chmod 0755 "$rootfs/usr/local/sbin/"*

# The PACS writes into the drop folder as `pacs` (SMB) or as that account's uid (NFS),
# in lungwatch's group: lungwatch may then read and remove what arrives.
in_root useradd --system --gid lungwatch --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin --comment "PACS export into the lungwatch drop folder" pacs
# No password until the first boot sets one: root logs in only with the first-boot password.
in_root passwd --lock root >/dev/null

in_root systemctl enable lungwatch-firstboot.service lungwatch-growdata.service \
  systemd-networkd.service systemd-resolved.service systemd-timesyncd.service \
  ssh.service smbd.service >/dev/null
# NetBIOS (nmbd) is not needed by SMB over TCP 445, nor is an AD domain controller; the
# NFS server and rpcbind stay off until `lungwatch-setup nfs` names the clients, and the
# box mounts no NFS itself; apt's timers have no network to use; e2scrub needs LVM; nothing
# waits for the network to be "online" (an offline box must boot without it).
for u in nmbd.service samba-ad-dc.service nfs-server.service nfs-client.target \
  rpcbind.service rpcbind.socket apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  e2scrub_reap.service systemd-networkd-wait-online.service; do
  in_root systemctl disable "$u" >/dev/null 2>&1 || true
done
in_root systemctl mask samba-ad-dc.service systemd-networkd-wait-online.service >/dev/null 2>&1

echo lungwatch >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tlungwatch\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
# The console login screen is written at every boot (addresses, URL, first passwords).
ln -sfn /run/lungwatch-appliance/issue "$rootfs/etc/issue"
ln -sfn /run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
# Per-box identity is made at first boot: machine id (DHCP client id), SSH host keys,
# Samba's secrets.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id" "$rootfs"/etc/ssh/ssh_host_*
rm -f "$rootfs"/var/lib/samba/private/*.tdb "$rootfs"/var/lib/samba/*.tdb

# ---- 4. boot loader files --------------------------------------------------------------
uuid() { cat /proc/sys/kernel/random/uuid; }
root_uuid="$(uuid)"; var_uuid="$(uuid)"; data_uuid="$(uuid)"
esp_serial="$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n' | tr a-f A-F)"
esp_uuid="${esp_serial:0:4}-${esp_serial:4:4}"
cmdline="root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200n8 panic=10"

cat >"$rootfs/etc/fstab" <<FSTAB
# lungwatch appliance. The system is read-only; lungwatch-setup makes it writable while it
# changes a setting. Writable: /var (logs, Samba, time, package state) and the data
# partition (drop folder, store, database), which grows to the end of the disk at boot.
UUID=$root_uuid  /                   ext4   ro,noatime,errors=remount-ro            0 1
UUID=$var_uuid   /var                ext4   rw,noatime,nodev,nosuid                 0 2
UUID=$data_uuid  /var/lib/lungwatch  ext4   rw,noatime,nodev,nosuid,noexec          0 2
UUID=$esp_uuid   /boot/efi           vfat   ro,noatime,umask=0077,shortname=winnt   0 2
tmpfs            /tmp                tmpfs  rw,nosuid,nodev,mode=1777,size=25%      0 0
FSTAB
mkdir -p "$rootfs/boot/efi"

# GRUB's BIOS modules beside its config, for the modules the core image does not embed.
mkdir -p "$rootfs/boot/grub"
cp -r "$rootfs/usr/lib/grub/i386-pc" "$rootfs/boot/grub/"
cat >"$rootfs/boot/grub/grub.cfg" <<GRUB
# lungwatch appliance, written by image/build.sh. Kernel updates need no change here:
# /vmlinuz and /initrd.img are Debian's links to the newest kernel, *.old to the previous.
insmod part_gpt
insmod ext2
insmod all_video
if serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1; then
  terminal_input console serial
  terminal_output console serial
fi
set timeout=3
set default=0
search --no-floppy --fs-uuid --set=root $root_uuid
menuentry "lungwatch appliance" {
  linux /vmlinuz $cmdline
  initrd /initrd.img
}
menuentry "lungwatch appliance, previous kernel" {
  linux /vmlinuz.old $cmdline
  initrd /initrd.img.old
}
GRUB
# The initramfs again, now that it can see the fstab (it takes the root fsck from it).
in_root update-initramfs -u -k all
if [ ! -e "$rootfs/vmlinuz" ] || [ ! -e "$rootfs/initrd.img" ]; then die "no /vmlinuz or /initrd.img in the image"; fi

# BIOS: GRUB's core image finds the root filesystem by UUID and reads /boot/grub from it.
# shellcheck disable=SC2016 # $root is GRUB's
printf 'search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\n' "$root_uuid" \
  >"$rootfs/tmp/grub-early.cfg"
in_root grub-mkimage -O i386-pc -o /tmp/core.img -c /tmp/grub-early.cfg -p /boot/grub \
  biosdisk part_gpt ext2 search search_fs_uuid configfile normal
mv "$rootfs/tmp/core.img" "$work/core.img"
cp "$rootfs/usr/lib/grub/i386-pc/boot.img" "$work/boot.img"
rm -f "$rootfs/tmp/grub-early.cfg"

# UEFI: Debian's signed shim and GRUB on the removable-media path (no NVRAM entry
# needed), so Secure Boot works with the Microsoft UEFI CA most firmware trusts.
esp="$work/esp"
rm -rf "$esp" "$work/debs"
mkdir -p "$esp/EFI/BOOT" "$esp/EFI/debian" "$work/debs"
# (Downloaded by the mmdebstrap hook above; mmdebstrap empties /tmp, so they wait elsewhere.)
for deb in "$rootfs"/var/cache/lungwatch-efi/*.deb; do
  [ -e "$deb" ] || die "the signed shim/GRUB packages were not downloaded"
  dpkg-deb -x "$deb" "$work/debs"
  dpkg-deb -f "$deb" Package Version | awk '{print $2}' | paste -sd' ' >>"$work/efi-packages.txt"
done
rm -rf "$rootfs/var/cache/lungwatch-efi"
find_one() { find "$work/debs" -name "$1" -print -quit | grep . || die "$1 not found in the signed packages"; }
cp "$(find_one shimx64.efi.signed)" "$esp/EFI/BOOT/BOOTX64.EFI"
cp "$(find_one grubx64.efi.signed)" "$esp/EFI/BOOT/grubx64.efi"
cp "$(find_one mmx64.efi.signed)" "$esp/EFI/BOOT/mmx64.efi"
# The signed GRUB reads grub.cfg from /EFI/debian (its built-in prefix) or beside itself.
# shellcheck disable=SC2016 # $root and $prefix are GRUB's
printf 'search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n' \
  "$root_uuid" | tee "$esp/EFI/debian/grub.cfg" >"$esp/EFI/BOOT/grub.cfg"
cp "$here/esp/lungwatch-firstboot.conf.example" "$here/esp/README.txt" "$esp/"

# ---- 5. tidy the tree ------------------------------------------------------------------
in_root apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log \
  "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
find "$rootfs/var/log" -type f -exec truncate -s 0 {} +
cleanup
mounted=()

# ---- 6. filesystems ----------------------------------------------------------------------
say "filesystems"
# Data partition: the drop folder and the state folder exactly as install.sh made them.
mv "$rootfs/var" "$work/var"
mkdir -m 0755 "$rootfs/var"
mv "$work/var/lib/lungwatch" "$work/data"
# Keep the mount point, with the ownership install.sh gave it.
mkdir "$work/var/lib/lungwatch"
chown --reference="$work/data" "$work/var/lib/lungwatch"
chmod --reference="$work/data" "$work/var/lib/lungwatch"

mib_of() { du -sxm "$1" | awk '{print $1}'; }
root_used="$(mib_of "$rootfs")"
var_used="$(mib_of "$work/var")"
# Room for one kernel upgrade (the old kernel stays as a fallback) and a few lungwatch
# updates; rounded up to 256 MiB.
root_mib=$(( (root_used * 3 / 2 + 768 + 255) / 256 * 256 ))
[ "$var_used" -lt $((var_mib / 2)) ] || die "/var holds $var_used MiB: raise --var-size"

mkext4() { # label uuid dir size_mib file
  rm -f "$5"
  mkfs.ext4 -q -L "$1" -U "$2" -d "$3" -E root_owner="$(stat -c %u:%g "$3")" "$5" "$4M" >/dev/null
  e2fsck -fn "$5" >/dev/null 2>&1 || die "the $1 filesystem does not check clean"
}
mkext4 LWROOT "$root_uuid" "$rootfs" "$root_mib" "$work/root.img"
mkext4 LWVAR "$var_uuid" "$work/var" "$var_mib" "$work/var.img"
mkext4 LWDATA "$data_uuid" "$work/data" "$data_mib" "$work/data.img"

rm -f "$work/esp.img"
mkfs.vfat -C -F 32 -n LWBOOT -i "$esp_serial" "$work/esp.img" $((esp_mib * 1024)) >/dev/null
(cd "$esp" && find . -mindepth 1 -type d | sed 's|^\./||' | while read -r d; do mmd -i "$work/esp.img" "::$d"; done)
(cd "$esp" && find . -type f | sed 's|^\./||' | while read -r f; do mcopy -i "$work/esp.img" "$f" "::$f"; done)

# ---- 7. the disk -----------------------------------------------------------------------
say "disk image"
raw="$out/lungwatch-appliance.raw"
mib=2048 # sectors per MiB
p1=$((1 * mib)); p2=$((2 * mib)); p3=$((p2 + esp_mib * mib)); p4=$((p3 + root_mib * mib))
p5=$((p4 + var_mib * mib)); end=$((p5 + data_mib * mib))
rm -f "$raw"
truncate -s $(((end + mib) * 512)) "$raw"
# GPT with a BIOS boot partition (GRUB's core image), the EFI system partition (also the
# first-boot settings file), / , /var and the data partition last, so it can grow.
sfdisk --quiet --no-reread --no-tell-kernel "$raw" <<SFDISK
label: gpt
unit: sectors
first-lba: 2048
start=$p1, size=$mib, type=21686148-6449-6E6F-744E-656564454649, name="bios-boot"
start=$p2, size=$((esp_mib * mib)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="LWBOOT"
start=$p3, size=$((root_mib * mib)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="LWROOT"
start=$p4, size=$((var_mib * mib)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="LWVAR"
start=$p5, size=$((data_mib * mib)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="LWDATA"
SFDISK
put() { dd if="$1" of="$raw" bs=512 seek="$2" conv=notrunc,sparse status=none; }
put "$work/esp.img" $p2
put "$work/root.img" $p3
put "$work/var.img" $p4
put "$work/data.img" $p5

# GRUB for BIOS, what grub-bios-setup does, without a loop device: boot.img's code into
# the MBR (the partition table after byte 440 stays), core.img into the BIOS boot
# partition, and the sector numbers patched in.
core_sectors=$((($(stat -c %s "$work/core.img") + 511) / 512))
[ "$core_sectors" -le "$mib" ] || die "GRUB's core image does not fit the BIOS boot partition"
bytes() { # value count: the value as count little-endian bytes
  local i
  # shellcheck disable=SC2059 # the format is the byte, as \xNN
  for ((i = 0; i < $2; i++)); do printf "\\x$(printf %02x $((($1 >> (8 * i)) & 255)))"; done
}
# boot.img: the sector of core.img at 0x5c; the BIOS drive check at 0x66 becomes two NOPs,
# as grub-bios-setup does for hard disks.
bytes $p1 8 | dd of="$work/boot.img" bs=1 seek=$((0x5c)) conv=notrunc status=none
printf '\x90\x90' | dd of="$work/boot.img" bs=1 seek=$((0x66)) conv=notrunc status=none
# core.img's first sector (diskboot.img) ends with the list of the sectors to load next:
# start (8 bytes) at 500, count (2 bytes) at 508.
bytes $((p1 + 1)) 8 | dd of="$work/core.img" bs=1 seek=500 conv=notrunc status=none
bytes $((core_sectors - 1)) 2 | dd of="$work/core.img" bs=1 seek=508 conv=notrunc status=none
dd if="$work/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$raw" bs=512 seek=$p1 conv=notrunc status=none

if [ "$qcow2" -eq 1 ]; then
  say "qcow2 (compressed)"
  qemu-img convert -c -O qcow2 "$raw" "$out/lungwatch-appliance.qcow2"
fi

# ---- 8. record -------------------------------------------------------------------------
build_secs=$((SECONDS - start_time))
{
  echo "lungwatch $version appliance image, built $(date -u +%Y-%m-%dT%H:%M:%SZ) in ${build_secs} s"
  echo "debian $suite from $mirror; kernel $(basename "$(readlink -f "$rootfs/vmlinuz")")"
  echo "partitions (MiB): esp $esp_mib, root $root_mib (used $root_used), var $var_mib (used $var_used), data $data_mib"
  echo "uuids: root $root_uuid var $var_uuid data $data_uuid esp $esp_uuid"
  echo "efi: $(paste -sd';' "$work/efi-packages.txt")"
  echo "raw: $(du -h --apparent-size "$raw" | cut -f1) ($(du -h "$raw" | cut -f1) allocated)"
  [ "$qcow2" -eq 0 ] || echo "qcow2: $(du -h "$out/lungwatch-appliance.qcow2" | cut -f1)"
  echo "update bundle: $bundle-update.tar.gz"
} | tee "$out/build-info.txt"
rm -rf "$work"
say "done in ${build_secs} s: images in $out"
