#!/bin/sh
# cloud-instance-home: mount the person's home volume on the instance user's
# home. The NixOS unit cloud-instance-home runs it after the bootstrap unit
# and before sshd and systemd-user-sessions; personalise mode of
# bootstrap.sh starts that unit when a warm pool machine gets a person with
# a home volume. internal/bootstrap/home_test.go runs it in CI.
#
# The bootstrap script records the volume's device path, from the
# document's home_device, in var/lib/cloud-instance/home-device under the
# root. Without that file there is no volume and nothing to do. With it:
#
# 1. Something is mounted on the home already: nothing to do (the unit may
#    be started again, by personalise mode or by hand).
# 2. Wait for the device: Hetzner attaches a volume to a running machine
#    within seconds, and udev then makes the by-id link. At most
#    CLOUD_INSTANCE_HOME_WAIT seconds; then it fails without mounting
#    anything, saying so in the journal. sshd starts anyway (it only waits
#    for this unit), so the person can still log in, to the machine's own
#    home without their files, and login shells say so (cloud-instance.nix).
# 3. Format it only if it is empty: blkid finds no filesystem, partition
#    table or other signature, and its first MiB is all zero (a new Hetzner
#    volume reads as zeros). Anything else is never formatted.
#    The first format is ext4, labelled "home", and seeds the volume with the
#    current home's contents (the dotfiles the image made; mke2fs -d, so
#    nothing needs mounting for it), owned by the instance user, with the
#    home's mode.
# 4. Mount it if it holds ext4; leave anything else (another filesystem, a
#    partition table) alone and fail, saying what it holds.
# 5. Once mounted, remove the agent's state file (CLOUD_INSTANCE_AGENT_STATE)
#    from it: what the last machine's agent said means nothing here, and the
#    tmpfiles rule that forgets it at boot ran on the folder beneath the
#    mount, before it.
#
# It mounts by the stable path, never /dev/sdX, which may differ from one
# boot to the next, with:
#   nodev,nosuid      a home holds no device files or set-id programs;
#   noatime           reading files does not write to the volume;
#   errors=remount-ro a damaged filesystem stops taking writes rather than
#                     spreading the damage.
# Not nofail: that fstab option makes a missing device harmless to the
# boot, which this unit is already (it is not in fstab at all: the device
# differs per person and is only known at boot), and a home that silently
# is not the volume is what must not pass unnoticed.
#
# The device path is checked against the one form Hetzner gives a volume
# (the pattern of internal/bootstrap), so nothing else reaches mkfs or
# mount.
#
# Environment (the NixOS module sets the first two):
#   CLOUD_INSTANCE_USER       the instance user, whose home this is (claude)
#   CLOUD_INSTANCE_AGENT_STATE the agent's state file, in that home (none)
#   CLOUD_INSTANCE_HOME_WAIT  seconds to wait for the device (90)
#   CLOUD_INSTANCE_ROOT       root the files and device are under (/)

set -eu
umask 022
export LC_ALL=C

user=${CLOUD_INSTANCE_USER:-claude}
wait_max=${CLOUD_INSTANCE_HOME_WAIT:-90}
agent_state=${CLOUD_INSTANCE_AGENT_STATE:-}
root=${CLOUD_INSTANCE_ROOT:-/}
root=${root%/}
record=$root/var/lib/cloud-instance/home-device
label=home

log() {
	printf 'cloud-instance-home: %s\n' "$*" >&2
}

# fail logs at the journal's error priority (journald reads the <3>
# prefix of a service's output) and ends the script.
fail() {
	printf '<3>cloud-instance-home: %s\n' "$*" >&2
	exit 1
}

case $user in
[a-z_]*) ;;
*) fail "CLOUD_INSTANCE_USER is not a valid user name" ;;
esac
case ${user#?} in
*[!a-z0-9_-]*) fail "CLOUD_INSTANCE_USER is not a valid user name" ;;
esac
case $wait_max in
'' | *[!0-9]*) fail "CLOUD_INSTANCE_HOME_WAIT is not a number of seconds" ;;
esac
[ "${#wait_max}" -le 4 ] || fail "CLOUD_INSTANCE_HOME_WAIT is over 9999 seconds"

if [ ! -f "$record" ]; then
	log "no home volume recorded: the home is on the machine's own disk"
	exit 0
fi
device=$(cat "$record")
# The pattern of internal/bootstrap: the prefix, then a positive number of
# at most 19 digits.
id=${device#/dev/disk/by-id/scsi-0HC_Volume_}
case $id in
"$device" | '' | 0* | *[!0-9]*) fail "$record does not hold a Hetzner volume's device path; not mounting anything" ;;
esac
[ "${#id}" -le 19 ] || fail "$record does not hold a Hetzner volume's device path; not mounting anything"

# The instance user's ids and home, from the passwd file under the root.
[ -r "$root/etc/passwd" ] || fail "cannot read $root/etc/passwd"
uid=
gid=
home=
while IFS=: read -r name _ uid gid _ home _; do
	if [ "$name" = "$user" ]; then
		break
	fi
	uid=
done <"$root/etc/passwd"
case $uid:$gid in
*[!0-9:]* | :* | *:) fail "the instance user $user is not in $root/etc/passwd" ;;
esac
case $home in
/?*) ;;
*) fail "the instance user $user has no home folder in $root/etc/passwd" ;;
esac
dev=$root$device
target=$root$home
[ -d "$target" ] || fail "the home folder $home of $user does not exist; not mounting the home volume"
case $agent_state in
'') ;;
*/../* | */..) fail "CLOUD_INSTANCE_AGENT_STATE is not a file in $home" ;;
"$home"/?*) ;;
*) fail "CLOUD_INSTANCE_AGENT_STATE is not a file in $home" ;;
esac

if mountpoint -q "$target"; then
	log "$home is mounted already; nothing to do"
	exit 0
fi

waited=0
while [ ! -e "$dev" ]; do
	if [ "$waited" -ge "$wait_max" ]; then
		fail "the home volume $device did not appear within $wait_max s (is it attached to this server?); not mounting anything: $home is the machine's own folder, without the person's files"
	fi
	if [ "$waited" -eq 0 ]; then
		log "waiting up to $wait_max s for the home volume $device to appear"
	fi
	sleep 1
	waited=$((waited + 1))
done

# probe sets holds to what blkid finds on the device ("" when nothing):
# a filesystem type, or a partition table's.
probe() {
	status=0
	found=$(blkid -p -o export "$dev") || status=$?
	holds=
	case $status in
	0) ;;
	2) return 0 ;;
	*) fail "blkid cannot probe the home volume $device (exit status $status); not formatting or mounting it" ;;
	esac
	while IFS='=' read -r key value; do
		case $key in
		TYPE | PTTYPE) holds=${holds:+$holds, }$key=$value ;;
		esac
	done <<EOF
$found
EOF
	# blkid found something it cannot name: still not empty.
	holds=${holds:-an unnamed signature}
}

probe

if [ -z "$holds" ]; then
	if [ "$(head -c 1048576 "$dev" | tr -d '\000' | head -c 1 | wc -c)" -ne 0 ]; then
		fail "the home volume $device holds data no tool recognises; not formatting or mounting it"
	fi
	mode=$(stat -c %a "$target")
	case $mode in
	[0-7][0-7][0-7]) ;;
	*) mode=700 ;;
	esac
	log "the home volume $device is empty: formatting it ext4 and copying $home into it"
	mkfs.ext4 -q -L "$label" -E "root_owner=$uid:$gid,nodiscard" -d "$target" "$dev" </dev/null ||
		fail "mkfs.ext4 failed on the home volume $device; not mounting it"
	debugfs -w -R "set_inode_field / mode 040$mode" "$dev" >/dev/null 2>&1 ||
		fail "cannot set the mode of the new home on $device; not mounting it"
	probe
fi

case $holds in
TYPE=ext4) ;;
*) fail "the home volume $device holds $holds, not an ext4 filesystem; leaving it alone, not mounting it" ;;
esac
mount -t ext4 -o nodev,nosuid,noatime,errors=remount-ro "$dev" "$target" ||
	fail "cannot mount the home volume $device on $home"
log "mounted the home volume $device on $home"
if [ -n "$agent_state" ]; then
	rm -f "$root$agent_state"
fi
