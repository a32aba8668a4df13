#!/usr/bin/env bash
# End-to-end test of the appliance image: boots a copy of it in QEMU (software emulation by
# default) with the web page, SMB and SSH ports forwarded to the host, waits for /healthz,
# copies a covid-ct-md series into the drop folder over the SMB share (as a PACS would),
# and waits for the series' result through /api. Prints the boot time and the time to the
# first result. It takes tens of minutes under emulation: run it by hand, not in CI.
#
#   image/test.sh [options]
#
# Options:
#   --image FILE     raw image (default image/out/lungwatch-appliance.raw); qcow2 is
#                    converted to raw first
#   --series DIR     DICOM series to drop (default ../shared/data/covid-ct-md/covid19-P002)
#   --kvm            hardware virtualisation (/dev/kvm) instead of emulation (-accel tcg)
#   --cpu MODEL      the emulated CPU (default Nehalem: SSE4.2, no AVX; TCG runs lungwatch's
#                    SSE inference about twice as fast as its AVX2/FMA inference; with --kvm:
#                    host)
#   --uefi           boot with UEFI firmware (OVMF) instead of BIOS
#   --secure-boot    UEFI with Secure Boot on and Microsoft's keys enrolled
#   --reboot         then power the guest off (ACPI), boot it again, time that boot and
#                    check that the result is still there
#   --disk-size SIZE the test disk (default 12G); the data partition grows into it at boot
#   --memory MIB     guest memory (default 4096)
#   --cpus N         guest CPUs (default 2)
#   --port-base N    host ports N (web), N+1 (SMB), N+2 (SSH), N+3 (QEMU monitor);
#                    default 38080
#   --boot-timeout S     default 2400
#   --result-timeout S   default 10800
#   --boot-only      stop after /healthz and the password check (e.g. to try --uefi)
#   --keep           keep the work folder (disk copy, serial log) after a pass
#
# Needs: qemu-system-x86, qemu-utils, curl, smbclient, mtools, fdisk; openssh-client for
# guest diagnostics on failure; ovmf for --uefi. No root needed (root or the kvm group for
# --kvm).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
image="$here/out/lungwatch-appliance.raw"
series="$repo/../shared/data/covid-ct-md/covid19-P002"
accel=tcg
firmware=bios
reboot=0
disk_size=12G
memory=4096
cpus=2
port_base=38080
boot_timeout=2400
result_timeout=10800
cpu=""
keep=0
boot_only=0
quiet=60 # the image's series.quiet_secs (lungwatch's default)

die() { echo "test.sh: FAIL: $*" >&2; exit 1; }
say() { echo "test.sh: [$(date +%T)] $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    --series) series="$2"; shift 2 ;;
    --kvm) accel=kvm; shift ;;
    --cpu) cpu="$2"; shift 2 ;;
    --uefi) firmware=uefi; shift ;;
    --secure-boot) firmware=secure-boot; shift ;;
    --reboot) reboot=1; shift ;;
    --disk-size) disk_size="$2"; shift 2 ;;
    --memory) memory="$2"; shift 2 ;;
    --cpus) cpus="$2"; shift 2 ;;
    --port-base) port_base="$2"; shift 2 ;;
    --boot-timeout) boot_timeout="$2"; shift 2 ;;
    --result-timeout) result_timeout="$2"; shift 2 ;;
    --boot-only) boot_only=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

for tool in qemu-system-x86_64 qemu-img curl smbclient mcopy sfdisk; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool is missing: apt-get install qemu-system-x86 qemu-utils curl smbclient mtools fdisk"
done
[ -f "$image" ] || die "no image at $image: build it with sudo image/build.sh"
[ -d "$series" ] || die "no series at $series (the covid-ct-md data: see ../shared/data/README.md)"
nfiles="$(find "$series" -maxdepth 1 -type f | wc -l)"
[ "$nfiles" -gt 0 ] || die "$series holds no files"
if [ "$accel" = kvm ] && [ ! -w /dev/kvm ]; then die "--kvm needs write access to /dev/kvm"; fi
web=$port_base; smb=$((port_base + 1)); ssh=$((port_base + 2)); mon=$((port_base + 3))
for p in $web $smb $ssh $mon; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use: pass --port-base"; fi
done

work="$(mktemp -d /var/tmp/lungwatch-image-test.XXXXXX)"
qemu_pid=""
passed=0
finish() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then kill "$qemu_pid" 2>/dev/null || true; fi
  if [ "$passed" -eq 1 ] && [ "$keep" -eq 0 ]; then rm -rf "$work"; else echo "test.sh: work folder kept: $work"; fi
}
trap finish EXIT

# ---- the disk: a copy of the image with test settings on its boot partition -------------
say "disk: copy of $image, grown to $disk_size"
case "$image" in
  *.qcow2) qemu-img convert -O raw "$image" "$work/disk.raw" ;;
  *) cp --sparse=always "$image" "$work/disk.raw" ;;
esac
qemu-img resize -q -f raw "$work/disk.raw" "$disk_size"
rand() { head -c 4096 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 20; }
web_pw="$(rand)"
smb_pw="$(rand)"
ssh_opts=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10)
{
  echo "HOSTNAME=lungwatch-test"
  echo "WEB_USER=radiology"
  echo "WEB_PASSWORD=$web_pw"
  echo "SMB_PASSWORD=$smb_pw"
  # A throw-away key, only for reading the guest's journal when something fails.
  if command -v ssh-keygen >/dev/null 2>&1 && ssh-keygen -q -t ed25519 -N '' -f "$work/ssh-key" -C lungwatch-test; then
    echo "SSH_AUTHORIZED_KEY=$(cat "$work/ssh-key.pub")"
  fi
} >"$work/settings.conf"
"$here/preseed.sh" "$work/disk.raw" "$work/settings.conf" >/dev/null

guest() { # command on the guest over SSH (diagnostics only)
  [ -f "$work/ssh-key" ] || return 1
  ssh "${ssh_opts[@]}" -i "$work/ssh-key" -p "$ssh" root@127.0.0.1 "$@"
}
fail() {
  echo "test.sh: FAIL: $*" >&2
  echo "---- serial console (last 40 lines) ----" >&2
  tail -n 40 "$work/serial.log" 2>/dev/null | tr -d '\r' | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' >&2 || true
  echo "---- guest journal: lungwatch, set-up (last 40 lines) ----" >&2
  guest journalctl -b --no-pager -n 40 -u lungwatch -u lungwatch-firstboot -u lungwatch-growdata -u smbd >&2 ||
    echo "(no SSH to the guest)" >&2
  exit 1
}

# ---- QEMU ---------------------------------------------------------------------------------
qemu_args=(-name lungwatch-test -m "$memory" -smp "$cpus" -display none -no-user-config -nodefaults
  -drive "file=$work/disk.raw,format=raw,if=virtio"
  -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$web-:8080,hostfwd=tcp:127.0.0.1:$smb-:445,hostfwd=tcp:127.0.0.1:$ssh-:22"
  -monitor "tcp:127.0.0.1:$mon,server=on,wait=off")
if [ "$accel" = kvm ]; then cpu="${cpu:-host}"; else cpu="${cpu:-Nehalem}"; fi
qemu_args+=(-accel "$accel" -cpu "$cpu")
case "$firmware" in
  bios) qemu_args+=(-machine q35) ;;
  uefi)
    [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || die "--uefi needs the ovmf package"
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$work/vars.fd"
    qemu_args+=(-machine q35 -drive "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
      -drive "if=pflash,format=raw,file=$work/vars.fd") ;;
  secure-boot)
    [ -f /usr/share/OVMF/OVMF_CODE_4M.ms.fd ] || die "--secure-boot needs the ovmf package"
    cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd "$work/vars.fd"
    qemu_args+=(-machine "q35,smm=on" -global "driver=cfi.pflash01,property=secure,value=on"
      -drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
      -drive "if=pflash,format=raw,unit=1,file=$work/vars.fd") ;;
esac

boot_count=0
start_guest() {
  boot_count=$((boot_count + 1))
  qemu-system-x86_64 "${qemu_args[@]}" -serial "file:$work/serial-$boot_count.log" 2>"$work/qemu.log" &
  qemu_pid=$!
  ln -sfn "serial-$boot_count.log" "$work/serial.log"
}

last_console_line() {
  tr -d '\r' <"$work/serial.log" 2>/dev/null | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | grep -av '^\s*$' | tail -n 1 | cut -c1-100
}

wait_healthz() { # -> seconds from start to "200 ok"
  local t0=$SECONDS code next=$((SECONDS + 30))
  while :; do
    kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited: $(cat "$work/qemu.log")"
    code="$(curl -ks -o /dev/null -w '%{http_code}' --max-time 10 "https://127.0.0.1:$web/healthz" || true)"
    [ "$code" != 200 ] || break
    [ $((SECONDS - t0)) -lt "$boot_timeout" ] || fail "no /healthz after ${boot_timeout} s (last answer: $code)"
    if [ "$SECONDS" -ge "$next" ]; then
      echo "test.sh:   ${boot_label} $((SECONDS - t0)) s, /healthz: ${code/000/no answer}; console: $(last_console_line)"
      next=$((SECONDS + 30))
    fi
    sleep 2
  done
  boot_secs=$((SECONDS - t0))
}

# -k: the box makes its own self-signed certificate at first boot (its fingerprint is on the
# console); what is tested here is that the page speaks only HTTPS, with a password.
api() { curl -ksf --max-time 20 -u "radiology:$web_pw" "https://127.0.0.1:$web$1"; }
json_field() { # name: the first "name":value in the JSON on stdin
  tr '\n' ' ' | grep -o "\"$1\": *\(\"[^\"]*\"\|[^,}]*\)" | head -n 1 | sed 's/^[^:]*: *//; s/"//g; s/ *$//' || true
}

# ---- 1. boot -------------------------------------------------------------------------------
say "boot 1: QEMU ($accel, -cpu $cpu, $firmware, $cpus CPUs, $memory MiB); serial console in $work/serial.log"
boot_label="boot:"
start_guest
wait_healthz
boot1_secs=$boot_secs
say "/healthz answers 200 after ${boot1_secs} s"

code="$(curl -ks -o /dev/null -w '%{http_code}' --max-time 20 "https://127.0.0.1:$web/api/status")"
[ "$code" = 401 ] || fail "/api/status without the password answered $code, not 401"
code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 "http://127.0.0.1:$web/healthz" || true)"
[ "$code" != 200 ] || fail "the web page answered plain HTTP; it must speak only HTTPS"
api /api/status >"$work/status.json" || fail "/api/status with the password failed"
say "the web page asks for the password; lungwatch $(json_field version <"$work/status.json") is up"
if [ "$boot_only" -eq 1 ]; then
  passed=1
  echo
  echo "== lungwatch appliance image test (boot only): PASS =="
  echo "QEMU:                $accel, -cpu $cpu, $firmware, $cpus CPUs, $memory MiB, host $(nproc) cores"
  echo "boot to /healthz:    ${boot1_secs} s (first boot)"
  exit 0
fi

# ---- 2. the series, over the SMB share ---------------------------------------------------------
name="$(basename "$series")"
# smbd may still be starting when lungwatch already answers: wait until the share does.
t_share=$SECONDS
until smbclient "//127.0.0.1/incoming" -p "$smb" -U "pacs%$smb_pw" -m SMB3 -c "ls" >"$work/smbclient.log" 2>&1; do
  [ $((SECONDS - t_share)) -lt 300 ] || fail "the SMB share does not answer: $(tail -n 3 "$work/smbclient.log")"
  sleep 5
done
say "dropping $name ($nfiles files, $(du -sh "$series" | cut -f1)) into \\\\box\\incoming over SMB"
t_drop=$SECONDS
smbclient "//127.0.0.1/incoming" -p "$smb" -U "pacs%$smb_pw" -m SMB3 \
  -c "mkdir $name; cd $name; lcd $series; prompt off; mput *" >"$work/smbclient.log" 2>&1 ||
  fail "smbclient could not copy the series: $(tail -n 5 "$work/smbclient.log")"
upload_secs=$((SECONDS - t_drop))
say "copied in ${upload_secs} s; waiting for the result (lungwatch waits ${quiet} s of quiet before a series is complete)"

# ---- 3. the result, through /api ---------------------------------------------------------------
next=$((SECONDS + 30))
while :; do
  kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited"
  if api /api/studies >"$work/studies.json" 2>/dev/null && grep -q '"top_class"' "$work/studies.json"; then break; fi
  [ $((SECONDS - t_drop)) -lt "$result_timeout" ] || fail "no result ${result_timeout} s after the drop"
  if [ "$SECONDS" -ge "$next" ]; then
    if api /api/status >"$work/status.json" 2>/dev/null; then
      echo "test.sh:   $((SECONDS - t_drop)) s: queue pending $(json_field queue_pending <"$work/status.json"), running $(json_field queue_running <"$work/status.json")"
    fi
    next=$((SECONDS + 30))
  fi
  sleep 5
done
result_secs=$((SECONDS - t_drop))
top_class="$(json_field top_class <"$work/studies.json")"
top_p="$(json_field top_probability <"$work/studies.json")"
affected="$(json_field affected_ratio <"$work/studies.json")"
severity="$(json_field severity_score <"$work/studies.json")"
study_uid="$(json_field study_uid <"$work/studies.json")"
say "first result ${result_secs} s after the drop began: $top_class ($top_p), affected ratio $affected, severity $severity"
api "/api/studies/$study_uid" >"$work/study.json" || fail "/api/studies/$study_uid failed"
total_ms="$(tr -d ' \n' <"$work/study.json" | { grep -o '"timings_ms":{[^}]*}' || true; } | head -n 1 | json_field total)"
[ -z "$total_ms" ] || say "lungwatch's own analysis time for the series (timings_ms.total): ${total_ms} ms"

# ---- 4. optionally: a clean power-off and a second boot ---------------------------------------
boot2_secs=""
if [ "$reboot" -eq 1 ]; then
  say "ACPI power-off"
  (exec 3<>"/dev/tcp/127.0.0.1/$mon" && echo system_powerdown >&3 && sleep 1) || fail "QEMU monitor unreachable"
  t_off=$SECONDS
  while kill -0 "$qemu_pid" 2>/dev/null; do
    [ $((SECONDS - t_off)) -lt 600 ] || fail "the guest did not power off within 600 s"
    sleep 2
  done
  say "powered off in $((SECONDS - t_off)) s; boot 2"
  boot_label="boot 2:"
  start_guest
  wait_healthz
  boot2_secs=$boot_secs
  say "/healthz answers 200 after ${boot2_secs} s"
  api /api/studies | grep -q "$study_uid" || fail "the result is gone after the reboot"
  say "the result is still there after the reboot"
fi
kill "$qemu_pid" 2>/dev/null || true
wait "$qemu_pid" 2>/dev/null || true
passed=1

echo
echo "== lungwatch appliance image test: PASS =="
echo "image:               $image ($(du -h --apparent-size "$image" | cut -f1), $(du -h "$image" | cut -f1) allocated)"
echo "QEMU:                $accel, -cpu $cpu, $firmware, $cpus CPUs, $memory MiB, host $(nproc) cores"
echo "boot to /healthz:    ${boot1_secs} s (first boot: set-up, SSH keys, partition growth)"
[ -z "$boot2_secs" ] || echo "second boot:         ${boot2_secs} s"
echo "series:              $name, $nfiles files, copied over SMB in ${upload_secs} s"
echo "time to first result: ${result_secs} s from the start of the copy (includes the copy and the ${quiet} s quiet period)"
echo "result:              $top_class ($top_p), affected ratio $affected, severity $severity"
