#!/bin/sh
# cloud-instance-bootstrap: personalise a cc-gateway machine at boot from the
# gateway's bootstrap document (format version 1, rendered by the gateway's
# internal/bootstrap package). The NixOS unit cloud-instance-bootstrap runs it
# before sshd starts; internal/bootstrap/script_test.go runs it in CI.
#
# Usage: bootstrap.sh              boot mode: apply the server's user_data
#        bootstrap.sh personalise  give a warm pool machine its person
#
# In boot mode it fetches the server's user_data from the Hetzner metadata
# service: either the document itself, or the infect path's installer script
# with the document on the line after the marker line below. It checks every
# field against strict patterns, the keys with ssh-keygen as well, and only
# then writes, under the root $CLOUD_INSTANCE_ROOT:
#
#   etc/ssh/ssh_host_ed25519_key          0600 root  the host key the gateway pins
#   etc/ssh/ssh_host_ed25519_key.pub      0644 root
#   etc/ssh/authorized_keys.bootstrap/USER 0644 root the person's and the gateway's keys
#   etc/cloud-instance/                   0755 USER  so that the gateway, logged in as
#                                                    USER, can replace expires
#   etc/cloud-instance/id                 0644 root  the instance id
#   etc/cloud-instance/expires            0644 root  RFC 3339 time, or "never"
#   var/lib/cloud-instance/expires.applied 0600 root the expiry last applied
#   var/lib/cloud-instance/pool           0600 root  a pool machine's instance id
#   var/lib/cloud-instance/personalisation 0600 root the document that personalised
#                                                    a pool machine (holds the host key)
#   var/lib/cloud-instance/home-device    0600 root  the person's home volume's device
#                                                    path, when the document names one
#   proc/sys/kernel/hostname                         if it exists: the hostname
#
# The expiry is written only when the source's value differs from the one
# last applied: after an extend the gateway updates etc/cloud-instance/expires
# itself, and a reboot must not bring back the older time in the user_data.
#
# The warm pool. A pool document ("pool": true) is one for a machine nobody
# has yet: the gateway's key its only authorized key, expiry "never". Booting
# with one applies it as any document and marks the machine a pool machine
# (the pool file). Later the gateway, logged in as the instance user, runs
# cc-instance-personalise (bootstrap.PersonaliseCommand), which runs this
# script as root in personalise mode with the person's document on standard
# input (at most 32 KiB). It checks it as boot mode checks the user_data, and
# refuses it unless it is not a pool document, its instance id is the pool
# machine's, its host key is the machine's current one (the key the gateway
# pinned never changes), its user is the instance user, and the machine is
# still a pool machine. Then it writes the authorized keys, the expiry (and
# expires.applied) and the hostname, each file replaced atomically, saves the
# document as the personalisation and removes the pool file. The very same
# document again (a gateway retrying after a crash) succeeds and changes
# nothing; any other document, once personalised, is refused.
#
# The home volume. A person's document may name the stable device path of
# their home volume (home_device: /dev/disk/by-id/scsi-0HC_Volume_ID and
# nothing else; never in a pool document). Applying the document records it
# in the home-device file, or removes that file when the document names
# none. The unit cloud-instance-home (home.sh), ordered after this one and
# before sshd, formats the volume once and mounts it on the instance user's
# home. The file is in the root-only state folder, not in etc/cloud-instance,
# which belongs to the instance user: that unit runs as root. Personalise
# mode starts that unit (CLOUD_INSTANCE_HOME_UNIT) once the document is
# applied, and fails if it fails, so the gateway must attach the volume
# before it personalises; the same document again starts it again.
#
# Hetzner's user_data cannot be changed, so a personalised machine powered
# off and on again boots with the pool document again: when the user_data is
# a pool document with the instance id of the saved personalisation, boot
# mode applies the personalisation instead, and the machine stays no pool
# machine. A document that is not a pool document (a machine restored from a
# snapshot gets a fresh one) is applied, and any personalisation and pool
# file are forgotten.
#
# Early in boot the network may not be up yet: curl then fails at once
# ("Network is unreachable", exit 7). So every failure to get an answer
# (unreachable, refused, timed out, HTTP 5xx, 408 or 429) is tried again, up
# to CLOUD_INSTANCE_FETCH_ATTEMPTS times with growing pauses (1, 2, 4, 8, then
# 10 s). A try takes at most 8 s, so with the defaults the fetch gives up
# after at most 10*8 + 1+2+4+8+5*10 = 145 s, inside the unit's
# TimeoutStartSec of 3 min. An answer that says there is no user_data (HTTP
# 4xx other than 408 and 429, or an empty body) ends it at once.
#
# Without a document (no user_data, metadata service unreachable, or a
# user_data that is not for us) it writes the static instance id and expiry
# of the NixOS configuration, if it has them, and succeeds; when the service
# never answered it says so as a warning first, since sshd then presents a
# host key the gateway does not pin. An invalid document is refused whole:
# nothing is written and the script fails.
#
# Document content is data only: it is matched against patterns, passed as
# arguments and written with printf and cat; it is never evaluated.
#
# Environment (the NixOS module sets the first four):
#   CLOUD_INSTANCE_USER            instance user; the document must name it (claude)
#   CLOUD_INSTANCE_SSH_PORT        sshd's port, compared with the document's (22)
#   CLOUD_INSTANCE_STATIC_ID       instance id to write without a document (none)
#   CLOUD_INSTANCE_STATIC_EXPIRES  expiry to write along with it (never)
#   CLOUD_INSTANCE_METADATA_URL    where the user_data is fetched from
#   CLOUD_INSTANCE_FETCH_ATTEMPTS  tries at fetching it (10)
#   CLOUD_INSTANCE_FETCH_PAUSE     first pause between tries in seconds,
#                                  doubled after each, at most 10 (1)
#   CLOUD_INSTANCE_ROOT            root the files are written under (/)
#   CLOUD_INSTANCE_DIR             where id and expires are, instead of
#                                  etc/cloud-instance under the root: the local
#                                  cloud's machines keep them in their folder
#   CLOUD_INSTANCE_HOME_UNIT       the unit personalise mode starts to mount a
#                                  home volume (NixOS: cloud-instance-home.service);
#                                  unset: the device is only recorded

set -eu
umask 077
# Byte-wise patterns and messages, whatever the locale.
export LC_ALL=C

# Hetzner's user_data limit, and bootstrap.MaxSize.
max_size=32768
# The line after this one holds the document in an infect installer script
# (see internal/bootstrap/infect.go).
marker=": <<'CC_GATEWAY_BOOTSTRAP_DOCUMENT'"

user=${CLOUD_INSTANCE_USER:-claude}
port=${CLOUD_INSTANCE_SSH_PORT:-22}
static_id=${CLOUD_INSTANCE_STATIC_ID:-}
static_expires=${CLOUD_INSTANCE_STATIC_EXPIRES:-never}
url=${CLOUD_INSTANCE_METADATA_URL:-http://169.254.169.254/hetzner/v1/userdata}
attempts=${CLOUD_INSTANCE_FETCH_ATTEMPTS:-10}
pause=${CLOUD_INSTANCE_FETCH_PAUSE:-1}
root=${CLOUD_INSTANCE_ROOT:-/}
root=${root%/}
etc_dir=${CLOUD_INSTANCE_DIR:-$root/etc/cloud-instance}
state_dir=$root/var/lib/cloud-instance
pool_file=$state_dir/pool
saved=$state_dir/personalisation
home_record=$state_dir/home-device
home_unit=${CLOUD_INSTANCE_HOME_UNIT:-}

# The patterns of internal/bootstrap, in jq's regular expression syntax;
# each must match a whole value.
id_re='[a-z0-9][a-z0-9-]{0,62}'
user_re='[a-z_][a-z0-9_-]{0,31}'
time_re='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})'
# A bare authorized key: type and base64, no options, no comment.
key_re='(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,2}'
host_re='ssh-ed25519 [A-Za-z0-9+/]+={0,2}'
# A Hetzner volume's stable device path; home.sh has the same pattern.
home_re='/dev/disk/by-id/scsi-0HC_Volume_[1-9][0-9]{0,18}'
pem_re='-----BEGIN OPENSSH PRIVATE KEY-----\n([A-Za-z0-9+/=]{1,76}\n){1,100}-----END OPENSSH PRIVATE KEY-----\n?'

log() {
	printf 'cloud-instance-bootstrap: %s\n' "$*" >&2
}

# warn logs at the journal's warning priority (journald reads the <4>
# prefix of a service's output).
warn() {
	printf '<4>cloud-instance-bootstrap: warning: %s\n' "$*" >&2
}

fail() {
	log "$*"
	exit 1
}

# matches VALUE PATTERN: whether PATTERN matches all of VALUE.
matches() {
	jq -en --arg v "$1" --arg re "$2" '$v | test("\\A(?:" + $re + ")\\z")' >/dev/null
}

# is_name VALUE MAX FIRST REST: whether VALUE has at most MAX characters, the
# first one of FIRST and the others of REST (glob bracket contents).
is_name() {
	case $1 in
	[$3]*) ;;
	*) return 1 ;;
	esac
	case ${1#?} in
	*[!$4]*) return 1 ;;
	esac
	[ "${#1}" -le "$2" ]
}

# number_in VALUE MIN MAX: whether VALUE is a decimal number from MIN to MAX.
number_in() {
	case $1 in
	'' | *[!0-9]*) return 1 ;;
	esac
	[ "${#1}" -le 5 ] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]
}

mode=boot
case $# in
0) ;;
1)
	[ "$1" = personalise ] || fail "unknown mode $1; the one mode besides boot is personalise"
	mode=personalise
	;;
*) fail "too many arguments; usage: bootstrap.sh [personalise]" ;;
esac

# The same patterns as user_re and id_re, without starting jq.
is_name "$user" 32 'a-z_' 'a-z0-9_-' || fail "CLOUD_INSTANCE_USER is not a valid user name"
number_in "$port" 1 65535 || fail "CLOUD_INSTANCE_SSH_PORT is not a port number"
number_in "$attempts" 1 100 || fail "CLOUD_INSTANCE_FETCH_ATTEMPTS is not a number from 1 to 100"
number_in "$pause" 0 10 || fail "CLOUD_INSTANCE_FETCH_PAUSE is not a number from 0 to 10"
[ -z "$static_id" ] || is_name "$static_id" 63 'a-z0-9' 'a-z0-9-' ||
	fail "CLOUD_INSTANCE_STATIC_ID is not a valid instance id"
[ "$static_expires" = never ] || matches "$static_expires" "$time_re" ||
	fail "CLOUD_INSTANCE_STATIC_EXPIRES is neither an RFC 3339 time nor \"never\""
if [ -n "$home_unit" ]; then
	case $home_unit in
	*.service) is_name "${home_unit%.service}" 64 'a-z' 'a-z0-9-' ;;
	*) false ;;
	esac || fail "CLOUD_INSTANCE_HOME_UNIT is not a unit name such as cloud-instance-home.service"
fi

# Private scratch space: the document holds the machine's private host key.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM

# fetch_once tries once to write the user_data to $work/user-data, and the
# HTTP status to $work/http-status ("000" without an answer); it fails with
# curl's status.
fetch_once() {
	# --max-filesize refuses a body announced as too large; the size check
	# after the download catches one that is not announced.
	curl --silent --show-error --fail --noproxy '*' \
		--connect-timeout 4 --max-time 8 \
		--max-filesize "$max_size" \
		--write-out '%{http_code}' \
		--output "$work/user-data" "$url" >"$work/http-status"
}

# final: whether the last try's curl status $code and HTTP status $http
# are an answer that another try would not change: the user_data, one over
# the size limit, or an HTTP 4xx but 408 (timeout) and 429 (too many).
final() {
	case $code:$http in
	0:* | 63:*) return 0 ;;
	22:408 | 22:429) return 1 ;;
	22:4*) return 0 ;;
	esac
	return 1
}

# fetch runs fetch_once until the metadata service gives a final answer, or
# $attempts tries failed (see the top of the file). It leaves the last try's
# statuses in $code and $http.
fetch() {
	try=1
	delay=$pause
	while :; do
		code=0
		fetch_once || code=$?
		http=$(cat "$work/http-status")
		if final || [ "$try" -ge "$attempts" ]; then
			return 0
		fi
		log "try $try of $attempts: no answer from $url (curl exit status $code, HTTP status $http); trying again in $delay s"
		sleep "$delay"
		try=$((try + 1))
		delay=$((delay * 2))
		if [ "$delay" -gt 10 ]; then
			delay=10
		fi
	done
}

# extract_document prints the line after the marker line of an installer
# script on stdin, and fails if there is none.
extract_document() {
	found=
	while IFS= read -r line || [ -n "$line" ]; do
		if [ -n "$found" ]; then
			printf '%s\n' "$line"
			return 0
		fi
		if [ "$line" = "$marker" ]; then
			found=1
		fi
	done
	return 1
}

# fetch_document sets doc to the file holding the server's bootstrap
# document, or to nothing when there is none.
fetch_document() {
	doc=
	fetch
	if [ "$code" -eq 63 ]; then
		fail "the user_data is over the $max_size byte limit; refusing it"
	elif [ "$code" -ne 0 ] && final; then
		log "no user_data from $url (HTTP status $http)"
	elif [ "$code" -ne 0 ]; then
		warn "the metadata service at $url gave no answer in $attempts tries (last: curl exit status $code, HTTP status $http); going on without a bootstrap document, so sshd will present a host key the gateway does not pin and the gateway will refuse this machine"
	elif [ ! -s "$work/user-data" ]; then
		log "the server has no user_data"
	else
		size=$(($(wc -c <"$work/user-data")))
		if [ "$size" -gt "$max_size" ]; then
			fail "the user_data is $size bytes, over the $max_size byte limit; refusing it"
		fi
		if [ "$(head -c 2 "$work/user-data")" = '#!' ]; then
			if extract_document <"$work/user-data" >"$work/document"; then
				doc=$work/document
			else
				log "the user_data is a script without a bootstrap document; it is not for this machine"
			fi
		else
			doc=$work/user-data
		fi
	fi
}

# check_document FILE prints one line per problem of the document in FILE,
# and fails if it is not JSON at all. The lines name fields, never their
# content.
check_document() {
	jq -rs \
		--arg id_re "$id_re" --arg user_re "$user_re" --arg time_re "$time_re" \
		--arg key_re "$key_re" --arg host_re "$host_re" --arg pem_re "$pem_re" --arg home_re "$home_re" '
		def full($re): if type == "string" then test("\\A(?:" + $re + ")\\z") else false end;
		def problem($cond; $text): if $cond then $text else empty end;
		if length != 1 or (.[0] | type) != "object" then
			"it is not one JSON object"
		else
			.[0]
			| problem(keys - ["version", "instance_id", "hostname", "user", "expires_at",
				"authorized_keys", "host_key", "ssh_port", "pool", "home_device"] != []; "it has unknown fields"),
			problem(.version != 1; "its version is not 1"),
			problem(.instance_id | full($id_re) | not; "instance_id is not a valid instance id"),
			problem(.hostname | full($id_re) | not; "hostname is not a valid hostname"),
			problem(.user | full($user_re) | not; "user is not a valid user name"),
			problem(.expires_at | (. == "never" or full($time_re)) | not;
				"expires_at is neither an RFC 3339 time nor \"never\""),
			(if (.authorized_keys | type) != "array" or (.authorized_keys | length) == 0 then
				"authorized_keys is not a list of keys"
			else
				problem(any(.authorized_keys[]; full($key_re) | not);
					"an authorized key is not a bare key of a known type")
			end),
			(if (.host_key | type) != "object" or (.host_key | keys) != ["private", "public"] then
				"host_key does not have exactly a public and a private half"
			else
				problem(.host_key.public | full($host_re) | not; "host_key.public is not an ed25519 key"),
				problem(.host_key.private | full($pem_re) | not; "host_key.private is not an OpenSSH private key")
			end),
			problem(.ssh_port | (type == "number" and . == floor and . >= 1 and . <= 65535) | not;
				"ssh_port is not a port number"),
			problem(has("pool") and .pool != true; "pool is not true"),
			problem(has("home_device") and (.home_device | full($home_re) | not);
				"home_device is not a Hetzner volume'"'"'s /dev/disk/by-id/scsi-0HC_Volume_ID path"),
			problem(.pool == true and has("home_device"); "a pool document has a home_device")
		end
	' "$1"
}

# read_document FILE NOT_JSON checks the document in FILE, failing with
# the message NOT_JSON if it is not JSON at all, and reads its fields into instance_id, hostname, expires, pool,
# home_device (empty: none) and host_public, its keys into $work/authorized_keys and its host key
# into $work/host_key and $work/host_key.pub. It fails on the first problem.
read_document() {
	problems=$(check_document "$1") || fail "$2; refusing it"
	if [ -n "$problems" ]; then
		printf '%s\n' "$problems" | while IFS= read -r p; do log "bootstrap document: $p"; done
		fail "refusing the bootstrap document"
	fi
	# Every field now matches its pattern: one line each, safe to put in a
	# variable and in a log line.
	jq -r '.instance_id, .hostname, .user, .expires_at, .ssh_port, (.pool // false), (.home_device // ""),
		.host_key.public, .authorized_keys[]' "$1" >"$work/fields"
	{
		read -r instance_id
		read -r hostname
		read -r doc_user
		read -r expires
		read -r doc_port
		read -r pool
		read -r home_device
		read -r host_public
		cat >"$work/authorized_keys"
	} <"$work/fields"
	printf '%s\n' "$host_public" >"$work/host_key.pub"
	jq -j .host_key.private "$1" >"$work/host_key"
	if [ "$doc_user" != "$user" ]; then
		fail "the document is for user $doc_user, but this machine's instance user is $user; refusing it"
	fi
	if [ "$doc_port" != "$port" ]; then
		log "warning: the document says sshd listens on port $doc_port, but here it listens on $port; the gateway's --machine-ssh-port must match"
	fi

	# sshd reads what ssh-keygen reads: each key must parse, with a blob of
	# the type its line names.
	n=0
	while IFS= read -r key; do
		n=$((n + 1))
		printf '%s\n' "$key" >"$work/key.pub"
		ssh-keygen -l -f "$work/key.pub" >/dev/null 2>&1 ||
			fail "authorized key $n is not a key ssh-keygen reads; refusing the document"
	done <"$work/authorized_keys"
	derived=$(ssh-keygen -y -P '' -f "$work/host_key" 2>/dev/null) ||
		fail "host_key.private is not a key ssh-keygen reads; refusing the document"
	# ssh-keygen -y appends the key's comment, if it has one.
	derived_type=${derived%% *}
	derived_blob=${derived#* }
	derived_blob=${derived_blob%% *}
	if [ "$derived_type $derived_blob" != "$host_public" ]; then
		fail "the host key's halves do not match; refusing the document"
	fi
}

# ensure_dir PATH MODE OWNER: create PATH if needed and set its mode and owner.
ensure_dir() {
	if [ ! -d "$1" ]; then
		(umask 022 && mkdir -p "$1")
	fi
	chmod "$2" "$1"
	set_owner "$3" "$1"
}

# set_owner OWNER PATH: only root can give files away; a test run as another
# user leaves ownership alone.
set_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		chown "$1" "$2"
	fi
}

# put SOURCE DEST MODE: replace DEST with SOURCE's content, atomically.
put() {
	tmp=$(mktemp "${2%/*}/.bootstrap.XXXXXX")
	cat "$1" >"$tmp"
	chmod "$3" "$tmp"
	mv -f "$tmp" "$2"
}

# put_keys writes the document's authorized keys for sshd.
put_keys() {
	put "$work/authorized_keys" "$root/etc/ssh/authorized_keys.bootstrap/$user" 0644
}

# put_hostname sets the running hostname, where the kernel's file is.
put_hostname() {
	if [ -f "$root/proc/sys/kernel/hostname" ]; then
		printf '%s' "$hostname" >"$root/proc/sys/kernel/hostname"
	fi
}

# put_expires writes the expiry and records it as applied.
put_expires() {
	printf '%s\n' "$expires" >"$work/expires"
	put "$work/expires" "$etc_dir/expires" 0644
	put "$work/expires" "$state_dir/expires.applied" 0600
}

# put_home_device records the document's home device for the home unit, or
# forgets the one of an earlier document.
put_home_device() {
	if [ -n "$home_device" ]; then
		printf '%s\n' "$home_device" >"$work/home-device"
		put "$work/home-device" "$home_record" 0600
	else
		rm -f "$home_record"
	fi
}

# start_home mounts a personalised machine's home volume now, through the
# unit that mounts it at boot, and fails if that fails.
start_home() {
	if [ -z "$home_device" ]; then
		return 0
	fi
	if [ -z "$home_unit" ]; then
		log "recorded the home device $home_device; whatever runs this script mounts it (CLOUD_INSTANCE_HOME_UNIT is unset)"
		return 0
	fi
	systemctl start "$home_unit" ||
		fail "instance $instance_id is personalised, but its home volume $home_device is not mounted: systemctl start $home_unit failed (journalctl -u $home_unit says why); the same document again tries again"
}

# canonical FILE prints the JSON document in FILE in one canonical form.
canonical() {
	jq -cS . "$1"
}

# personalise applies the person's document on standard input to this pool
# machine (see the top of the file).
personalise() {
	# One byte over the limit is enough to know the document is too large.
	head -c $((max_size + 1)) >"$work/document"
	size=$(($(wc -c <"$work/document")))
	if [ "$size" -gt "$max_size" ]; then
		fail "the document on standard input is over the $max_size byte limit; refusing it"
	fi
	[ "$size" -gt 0 ] || fail "no document on standard input; refusing to personalise without one"
	read_document "$work/document" "standard input holds no JSON document"
	if [ "$pool" = true ]; then
		fail "the document is a pool document, not a person's; refusing it"
	fi
	if [ -f "$saved" ]; then
		if [ "$(canonical "$work/document")" = "$(canonical "$saved")" ]; then
			# A crash may have come between saving and removing it.
			rm -f "$pool_file"
			log "instance $instance_id is personalised with this very document already; nothing to change"
			start_home
			exit 0
		fi
		fail "this machine is personalised already, with another document; refusing it"
	fi
	[ -f "$pool_file" ] || fail "this machine is not a pool machine; refusing to personalise it"
	pool_id=$(cat "$pool_file")
	if [ "$instance_id" != "$pool_id" ]; then
		fail "the document is for instance $instance_id, but this pool machine is instance $pool_id; refusing it"
	fi
	current=$(cat "$root/etc/ssh/ssh_host_ed25519_key.pub")
	current_type=${current%% *}
	current_blob=${current#* }
	current_blob=${current_blob%% *}
	if [ "$current_type $current_blob" != "$host_public" ]; then
		fail "the document's host key is not this machine's; refusing it"
	fi

	put_keys
	put_expires
	put_hostname
	put_home_device
	put "$work/document" "$saved" 0600
	rm -f "$pool_file"
	log "personalised pool instance $instance_id ($n authorized keys, expires $expires)"
	start_home
}

if [ "$mode" = personalise ]; then
	personalise
	exit 0
fi

fetch_document
# What the document makes of the machine's pool state: "pool" marks it a
# pool machine, "personalised" keeps it personalised, "person" forgets a
# pool machine's past, "" changes nothing.
becomes=
if [ -n "$doc" ]; then
	read_document "$doc" "the user_data is neither a bootstrap document nor a script holding one"
	if [ "$pool" != true ]; then
		becomes=person
	elif [ -f "$saved" ] && [ "$(jq -r .instance_id "$saved")" = "$instance_id" ]; then
		log "the user_data is the pool document of instance $instance_id, which was personalised since: applying the saved personalisation"
		read_document "$saved" "the saved personalisation is no JSON document"
		[ "$pool" != true ] || fail "the saved personalisation is a pool document; refusing it"
		becomes=personalised
	else
		becomes=pool
	fi
elif [ -n "$static_id" ]; then
	log "applying the static instance id $static_id of this machine's configuration"
	instance_id=$static_id
	expires=$static_expires
else
	log "no bootstrap document and no static instance id: nothing to apply"
	exit 0
fi

# The instance user's numeric ids, from the passwd file under the root (on
# NixOS with immutable users every user is there).
[ -r "$root/etc/passwd" ] || fail "cannot read $root/etc/passwd"
owner=
while IFS=: read -r name _ uid gid _; do
	if [ "$name" = "$user" ]; then
		owner=$uid:$gid
		break
	fi
done <"$root/etc/passwd"
case $owner in
[0-9]*:[0-9]*) ;;
*) fail "the instance user $user is not in $root/etc/passwd" ;;
esac

if [ -n "$doc" ]; then
	ensure_dir "$root/etc/ssh" 0755 0:0
	put "$work/host_key" "$root/etc/ssh/ssh_host_ed25519_key" 0600
	put "$work/host_key.pub" "$root/etc/ssh/ssh_host_ed25519_key.pub" 0644
	ensure_dir "$root/etc/ssh/authorized_keys.bootstrap" 0755 0:0
	put_keys
	put_hostname
fi

# The folder is root's while its files are written, so that nobody can swap
# them underneath, and the instance user's afterwards.
ensure_dir "$etc_dir" 0755 0:0
ensure_dir "$state_dir" 0700 0:0
if [ -n "$doc" ]; then
	put_home_device
fi
printf '%s\n' "$instance_id" >"$work/id"
put "$work/id" "$etc_dir/id" 0644
applied=
if [ -f "$state_dir/expires.applied" ]; then
	applied=$(cat "$state_dir/expires.applied")
fi
if [ "$expires" != "$applied" ] || [ ! -f "$etc_dir/expires" ]; then
	put_expires
else
	log "keeping $etc_dir/expires: the expiry $expires was applied before, and the gateway updates the file since"
fi
set_owner "$owner" "$etc_dir"

case $becomes in
pool)
	if [ -f "$saved" ]; then
		log "forgetting the saved personalisation of another instance"
		rm -f "$saved"
	fi
	put "$work/id" "$pool_file" 0600
	log "this is pool instance $instance_id: it waits for its person's document (cc-instance-personalise)"
	;;
personalised)
	# A crash may have come between saving it and removing the pool file.
	rm -f "$pool_file"
	;;
person)
	if [ -f "$saved" ] || [ -f "$pool_file" ]; then
		log "the user_data is no pool document: forgetting this machine's pool state"
		rm -f "$saved" "$pool_file"
	fi
	;;
esac

if [ -n "$doc" ]; then
	log "applied the bootstrap document of instance $instance_id ($n authorized keys, expires $expires)"
else
	log "applied instance id $instance_id (expires $expires)"
fi
