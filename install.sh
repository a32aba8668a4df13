#!/usr/bin/env bash
# Installs lungwatch on a Debian/Ubuntu server: the release binary, the models, the default
# config (never overwriting a site's), a `lungwatch` system user, the state folders and a
# hardened systemd unit. Idempotent: running it again upgrades the binary and models and
# keeps the config and data. Offline: it never downloads anything.
#
#   sudo ./install.sh                 install or upgrade, then (re)start the service
#   sudo ./install.sh --uninstall     remove binary, models and unit; keep config and data
#   sudo ./install.sh --uninstall --purge   also remove config, data and the user
#
# Options:
#   --root DIR     install under DIR instead of / (also: DESTDIR=DIR). No user is created,
#                  nothing is chowned and systemctl is not called: for packaging and tests.
#   --prefix DIR   where the binary goes: DIR/bin/lungwatch (default /usr/local)
#   --binary FILE  the lungwatch binary to install (default target/release/lungwatch,
#                  built with `cargo build --release --offline` when absent)
#   --no-start     install and enable, but do not (re)start the service
#   --no-tls-cert  do not create the self-signed certificate (image builds: each box makes
#                  its own at first boot, so that no two share a private key)
#
# HTTPS: when /etc/lungwatch/tls/ holds no certificate, a self-signed one for this host's
# names and addresses is made with openssl and its SHA-256 fingerprint printed. A site's
# own certificate there is never touched.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${DESTDIR:-}"
prefix="/usr/local"
binary=""
mode="install"
purge=0
start=1
make_cert=1

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a folder"; root="$2"; shift 2 ;;
    --root=*) root="${1#--root=}"; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --binary) [ $# -ge 2 ] || die "--binary needs a file"; binary="$2"; shift 2 ;;
    --binary=*) binary="${1#--binary=}"; shift ;;
    --uninstall) mode="uninstall"; shift ;;
    --purge) purge=1; shift ;;
    --no-start) start=0; shift ;;
    --no-tls-cert) make_cert=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ "$purge" -eq 0 ] || [ "$mode" = "uninstall" ] || die "--purge only goes with --uninstall"
root="${root%/}"
case "$prefix" in /*) ;; *) die "--prefix must be an absolute path" ;; esac

# Real install: the live system. Alternate root: files only.
live=0
if [ -z "$root" ]; then
  live=1
  [ "$(id -u)" -eq 0 ] || die "run as root (sudo ./install.sh), or use --root DIR to install into a folder"
fi
have_systemd=0
if [ "$live" -eq 1 ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  have_systemd=1
fi

bin_dir="$prefix/bin"
bin_path="$bin_dir/lungwatch"
share_dir="/usr/share/lungwatch"
models_dir="$share_dir/models"
conf_dir="/etc/lungwatch"
conf_path="$conf_dir/lungwatch.toml"
tls_dir="$conf_dir/tls"
state_dir="/var/lib/lungwatch"
unit_path="/etc/systemd/system/lungwatch.service"

if [ "$mode" = "uninstall" ]; then
  if [ "$have_systemd" -eq 1 ]; then
    systemctl disable --now lungwatch.service 2>/dev/null || true
  fi
  rm -f "$root$unit_path" "$root$bin_path"
  rm -rf "$root$share_dir"
  if [ "$have_systemd" -eq 1 ]; then systemctl daemon-reload; fi
  if [ "$purge" -eq 1 ]; then
    rm -rf "$root$conf_dir" "$root$state_dir"
    if [ "$live" -eq 1 ] && id lungwatch >/dev/null 2>&1; then
      userdel lungwatch || say "could not remove user lungwatch"
    fi
    say "removed lungwatch, its config, its data and its user"
  else
    say "removed lungwatch; kept $conf_dir and $state_dir (use --uninstall --purge to remove them)"
  fi
  exit 0
fi

# ---- the binary ----------------------------------------------------------------------
if [ -z "$binary" ]; then
  binary="$here/target/release/lungwatch"
  if [ ! -x "$binary" ]; then
    command -v cargo >/dev/null 2>&1 ||
      die "$binary is missing and cargo is not installed: build it on a build machine (cargo build --release) and copy the checkout here"
    say "building the release binary (offline)"
    (cd "$here" && cargo build --release --offline) ||
      die "offline build failed: build on a machine with the crates cached, then run install.sh again"
  fi
fi
[ -x "$binary" ] || die "no executable binary at $binary"
[ -f "$here/models/manifest.toml" ] || die "$here/models/manifest.toml is missing"
[ -f "$here/config/lungwatch.toml" ] || die "$here/config/lungwatch.toml is missing"

# ---- user ----------------------------------------------------------------------------
if [ "$live" -eq 1 ] && ! id lungwatch >/dev/null 2>&1; then
  nologin="$(command -v nologin || echo /usr/sbin/nologin)"
  useradd --system --user-group --home-dir "$state_dir" --no-create-home \
    --shell "$nologin" --comment "lungwatch appliance" lungwatch
  say "created system user lungwatch"
fi

# ---- files ---------------------------------------------------------------------------
install -d -m 0755 "$root$bin_dir" "$root$share_dir" "$root$conf_dir" "$root/etc/systemd/system"
# Copy to a temporary name and rename: a running daemon keeps its old executable intact.
install -m 0755 "$binary" "$root$bin_path.new"
mv -f "$root$bin_path.new" "$root$bin_path"

# Models: replace the whole folder, so a model removed upstream does not linger.
rm -rf "$root$models_dir.new"
install -d -m 0755 "$root$models_dir.new"
for f in "$here"/models/*.onnx "$here"/models/manifest.toml "$here"/models/MODEL_CARD.md; do
  [ -f "$f" ] && install -m 0644 "$f" "$root$models_dir.new/"
done
rm -rf "$root$models_dir"
mv "$root$models_dir.new" "$root$models_dir"

# Config: the site's file is never overwritten; the shipped default is kept beside it.
install -m 0644 "$here/config/lungwatch.toml" "$root$conf_dir/lungwatch.toml.dist"
if [ -e "$root$conf_path" ]; then
  say "kept the existing $conf_path (the shipped default is $conf_path.dist)"
else
  install -m 0640 "$here/config/lungwatch.toml" "$root$conf_path"
  say "installed the default config at $conf_path"
fi

# HTTPS certificate: made only when neither file is there, so a site's certificate (or a
# key without its certificate, being replaced) is never overwritten.
cert="$root$tls_dir/cert.pem"
key="$root$tls_dir/key.pem"
if [ "$make_cert" -eq 1 ]; then
  install -d -m 0750 "$root$tls_dir"
  if [ -e "$cert" ] || [ -e "$key" ]; then
    say "kept the existing certificate in $tls_dir"
  elif command -v openssl >/dev/null 2>&1; then
    host="$(hostname 2>/dev/null || echo lungwatch)"
    san="DNS:localhost,IP:127.0.0.1,IP:::1"
    for n in "$host" "$(hostname -f 2>/dev/null || true)"; do
      case "$n" in "" | localhost | *[!A-Za-z0-9.-]*) ;; *) case ",$san," in *",DNS:$n,"*) ;; *) san="$san,DNS:$n" ;; esac ;; esac
    done
    for ip in $(hostname -I 2>/dev/null || true); do
      case "$ip" in *[!0-9a-fA-F.:]*) ;; *) case ",$san," in *",IP:$ip,"*) ;; *) san="$san,IP:$ip" ;; esac ;; esac
    done
    # EC P-256: fast, and accepted by every current browser. 825 days: the longest
    # validity Apple's clients accept for a server certificate.
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -days 825 -subj "/CN=$host" -addext "subjectAltName=$san" \
      -keyout "$key.new" -out "$cert.new" 2>/dev/null) || die "openssl could not make a certificate"
    chmod 0640 "$key.new"
    chmod 0644 "$cert.new"
    mv -f "$key.new" "$key"
    mv -f "$cert.new" "$cert"
    say "created a self-signed certificate $tls_dir/cert.pem for $san"
  else
    say "openssl is not installed: no certificate made; put a PEM certificate and key in $tls_dir (see the README, Security)"
  fi
  if [ -f "$cert" ] && command -v openssl >/dev/null 2>&1; then
    say "certificate $(openssl x509 -in "$cert" -noout -fingerprint -sha256 2>/dev/null || echo "fingerprint unreadable")"
  fi
  if [ "$live" -eq 1 ]; then
    chown root:lungwatch "$root$tls_dir"
    [ ! -f "$key" ] || chown root:lungwatch "$key"
  fi
fi

# State: the drop folder (group-writable: add the PACS export's account to the lungwatch
# group) and the data folder (store, quarantine, database, results: lungwatch only).
install -d -m 0755 "$root$state_dir"
install -d -m 2770 "$root$state_dir/incoming"
install -d -m 0750 "$root$state_dir/data"
if [ "$live" -eq 1 ]; then
  chown root:lungwatch "$root$conf_path" "$root$conf_dir/lungwatch.toml.dist"
  chown lungwatch:lungwatch "$root$state_dir" "$root$state_dir/incoming" "$root$state_dir/data"
fi

cat >"$root$unit_path.new" <<UNIT
# Installed by lungwatch's install.sh; it rewrites this file on upgrade.
# Site changes belong in a drop-in: systemctl edit lungwatch
# (e.g. ReadWritePaths=/mnt/pacs-export when paths.incoming is elsewhere).
[Unit]
Description=lungwatch: chest CT analysis appliance (decision support, not a diagnosis)
After=local-fs.target remote-fs.target network.target
Wants=remote-fs.target

[Service]
Type=simple
User=lungwatch
Group=lungwatch
ExecStart=$bin_path serve --config $conf_path
ExecReload=/bin/kill -HUP \$MAINPID
Restart=on-failure
RestartSec=5s
TimeoutStopSec=90s
UMask=0027
LimitNOFILE=65536

# Hardening: lungwatch reads its config and models and writes only under $state_dir.
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=$state_dir
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
UNIT
chmod 0644 "$root$unit_path.new"
mv -f "$root$unit_path.new" "$root$unit_path"

if [ "$have_systemd" -eq 1 ]; then
  systemctl daemon-reload
  systemctl enable lungwatch.service >/dev/null
  if [ "$start" -eq 1 ]; then
    systemctl restart lungwatch.service
    say "lungwatch is running: systemctl status lungwatch; logs: journalctl -u lungwatch"
  else
    say "installed and enabled; start it with: systemctl start lungwatch"
  fi
elif [ "$live" -eq 1 ] && command -v systemctl >/dev/null 2>&1 &&
  systemctl enable lungwatch.service >/dev/null 2>&1; then
  # A chroot (an image build, image/build.sh): systemctl enables offline; the unit starts
  # at the next boot.
  say "installed and enabled; systemd is not running here, lungwatch starts at the next boot"
elif [ "$live" -eq 1 ]; then
  say "systemd is not running here: start lungwatch with $bin_path serve --config $conf_path"
else
  say "installed into $root (no user created, no service started)"
fi
