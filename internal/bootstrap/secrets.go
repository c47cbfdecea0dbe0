package bootstrap

// SecretsFile is where a machine keeps the person's secrets, relative to
// the instance user's home: sshd reads it into every session's environment
// (PermitUserEnvironment, set on the NixOS image and on local machines), so
// exec sessions, login shells and the tmux servers they start all see them.
// One NAME=value line per secret; sshd skips lines starting with #.
const SecretsFile = ".ssh/environment"

// SecretsCommand is what the gateway runs on a machine, as the instance
// user, to replace its secrets with the file's new contents, given on
// standard input (never on the command line, which other users' ps shows).
// The file is the user's alone (umask 077) and replaced atomically.
const SecretsCommand = `sh -c 'umask 077 && mkdir -p "$HOME/.ssh" && cat > "$HOME/` + SecretsFile + `.new" && mv -f "$HOME/` + SecretsFile + `.new" "$HOME/` + SecretsFile + `"'`
