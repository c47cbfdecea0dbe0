#!/bin/sh
# The infect path: user_data that installs NixOS over a stock Hetzner Cloud
# image (Debian or Ubuntu, x86, BIOS boot, ext4 root), for projects without a
# prebuilt snapshot. cloud-init runs it once, as root, on the first boot.
#
# The gateway renders it with internal/bootstrap's Document.RenderInfect,
# which puts in front of this file:
#   - the bootstrap document, in a here-document that nothing here reads:
#     once NixOS runs, its bootstrap unit fetches this very user_data from
#     the metadata service and takes the document from it;
#   - CC_GATEWAY_FLAKE, the flake holding the configuration to install;
#   - CC_GATEWAY_CONFIGURATION, the name of that nixosConfiguration;
#   - CC_GATEWAY_NIX_INSTALLER, the URL of the Nix installer script.
# All three are checked by RenderInfect against strict patterns.
#
# Steps: stop the stock sshd, label the root file system as the NixOS
# configuration expects it, install Nix, build the system, make it the boot
# entry, mark the old system for moving aside (NIXOS_LUSTRATE), and reboot.

set -eu

flake=${CC_GATEWAY_FLAKE:?the flake to install is not set}
configuration=${CC_GATEWAY_CONFIGURATION:?the configuration to install is not set}
installer=${CC_GATEWAY_NIX_INSTALLER:?the Nix installer URL is not set}

log() {
	printf 'cc-gateway infect: %s\n' "$*" >&2
}

on_exit() {
	status=$?
	if [ "$status" -ne 0 ]; then
		log "failed (exit status $status); the machine stays on its stock system, without sshd"
	fi
}
trap on_exit EXIT

if [ -e /etc/NIXOS ]; then
	log "this is NixOS already; nothing to do"
	exit 0
fi

# The gateway pins the host key in the bootstrap document, which only NixOS
# will serve. Until then it should find the port closed and keep waiting,
# rather than meet the stock system's key.
log "stopping the stock sshd"
systemctl stop ssh.socket ssh.service sshd.service 2>/dev/null || true

# The NixOS configuration mounts its root by the label "nixos", as on the
# prebuilt image, so the same configuration serves both paths.
root_device=$(findmnt --noheadings --output SOURCE /)
root_type=$(findmnt --noheadings --output FSTYPE /)
if [ "$root_type" != ext4 ]; then
	log "the root file system is $root_type, not ext4"
	exit 1
fi
log "labelling $root_device nixos"
e2label "$root_device" nixos

# Building the system can take more memory than the smallest servers have.
if [ -z "$(swapon --show=NAME --noheadings)" ]; then
	log "adding 2 GiB of swap for the build"
	fallocate -l 2G /swapfile.infect
	chmod 600 /swapfile.infect
	mkswap /swapfile.infect >/dev/null
	swapon /swapfile.infect
fi

# A single-user Nix for root: builds run as root, so no build users are
# needed; the installed NixOS brings its own Nix.
log "installing Nix from $installer"
export HOME=/root USER=root
export NIX_CONFIG='build-users-group =
experimental-features = nix-command flakes'
[ -d /nix ] || mkdir -m 0755 /nix
curl --fail --silent --show-error --location --proto '=https' --retry 5 "$installer" >/root/nix-install.sh
sh /root/nix-install.sh --no-daemon --no-channel-add --no-modify-profile
nix=/root/.nix-profile/bin/nix

log "building $flake#$configuration"
"$nix" build --no-link --profile /nix/var/nix/profiles/system \
	"$flake#nixosConfigurations.$configuration.config.system.build.toplevel"

# On its first boot NixOS moves everything of the old system but /nix and
# /boot to /old-root (which the configuration then removes), so nothing of it
# lingers: no stock host keys, no copy of this user_data.
log "making NixOS the boot entry"
touch /etc/NIXOS
: >/etc/NIXOS_LUSTRATE
if mountpoint -q /boot/efi; then
	umount /boot/efi
fi
rm -rf /boot.infect
mv /boot /boot.infect
mkdir /boot
NIXOS_INSTALL_BOOTLOADER=1 /nix/var/nix/profiles/system/bin/switch-to-configuration boot

# cloud-init keeps copies of the user_data, which holds the host's private
# key; the old root goes away on the next boot, but no need to wait.
rm -rf /var/lib/cloud/instances/*/user-data.txt* /var/lib/cloud/instances/*/scripts

log "rebooting into NixOS"
systemctl --no-block reboot
