#!/usr/bin/env bash
# Puts a settings file onto the boot partition (LWBOOT) of a raw lungwatch appliance image
# as lungwatch-firstboot.conf, without mounting anything (mtools). The box applies it at its
# next boot. For preparing images for many boxes, and used by image/test.sh.
#
#   image/preseed.sh IMAGE.raw SETTINGS-FILE
#
# The settings are described in image/esp/lungwatch-firstboot.conf.example. A qcow2 image
# must be converted first: qemu-img convert -O raw lungwatch-appliance.qcow2 box.raw
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac

die() { echo "preseed.sh: error: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: $0 IMAGE.raw SETTINGS-FILE"
img="$1"
settings="$2"
[ -f "$img" ] || die "no image at $img"
[ -f "$settings" ] || die "no settings file at $settings"
command -v mcopy >/dev/null 2>&1 || die "mcopy is missing: apt-get install mtools"
command -v sfdisk >/dev/null 2>&1 || die "sfdisk is missing: apt-get install fdisk"

# The boot partition's first sector, from the partition table (name LWBOOT).
start="$(sfdisk -d "$img" 2>/dev/null | sed -n 's/.*start= *\([0-9]*\),.*name="LWBOOT".*/\1/p')"
[ -n "$start" ] || die "$img has no LWBOOT partition: not a lungwatch appliance raw image"
mcopy -o -i "$img@@$((start * 512))" "$settings" ::/lungwatch-firstboot.conf
echo "preseed.sh: $settings is lungwatch-firstboot.conf on $img's boot partition"
