# shellcheck shell=sh
# Sourced by every login shell on a machine (bash's /etc/profile and zsh's
# /etc/zprofile on the NixOS image, a local machine's ~/.profile), so it is
# written for sh, bash and zsh alike: exports the person's current secrets from
# ~/.ssh/environment and unsets those removed since.
#
# sshd already puts the file into each session's environment, but a
# persistent tmux session's server keeps the environment of the connection
# that started it, and tmux starts each new window's shell from that. So a
# secret set or removed later would not reach new windows without this.
#
# The file holds NAME=value lines the gateway writes (bootstrap.SecretsFile);
# a value is one line (lease.CheckSecretValue). Values are assigned, never
# evaluated; comments, blank lines and lines without a variable name are
# skipped. CC_GATEWAY_SECRETS lists the names this set, so that the next
# shell started from this environment knows which ones are gone.
__cc_names=
if [ -r "$HOME/.ssh/environment" ]; then
	while IFS= read -r __cc_line || [ -n "$__cc_line" ]; do
		__cc_name=${__cc_line%%=*}
		case $__cc_name in
		"$__cc_line" | '' | [0-9]* | *[!A-Z0-9_]* | CC_GATEWAY_SECRETS) continue ;;
		esac
		export "$__cc_name=${__cc_line#*=}"
		__cc_names="$__cc_names $__cc_name"
	done <"$HOME/.ssh/environment"
fi
# One name at a time off the blank-separated list, not a for loop over it:
# zsh, the image's login shell, does not split an unquoted variable.
__cc_old=${CC_GATEWAY_SECRETS-}
while [ -n "$__cc_old" ]; do
	__cc_name=${__cc_old%% *}
	__cc_old=${__cc_old#"$__cc_name"}
	__cc_old=${__cc_old# }
	case $__cc_name in
	'' | [0-9]* | *[!A-Z0-9_]*) continue ;;
	esac
	case "$__cc_names " in
	*" $__cc_name "*) ;;
	*) unset "$__cc_name" ;;
	esac
done
CC_GATEWAY_SECRETS=${__cc_names# }
export CC_GATEWAY_SECRETS
unset __cc_line __cc_name __cc_names __cc_old
