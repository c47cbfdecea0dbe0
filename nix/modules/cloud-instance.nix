# services.cloudInstance: what makes a NixOS machine one of cc-gateway's
# machines. One image serves everyone: at boot the bootstrap unit reads the
# gateway's bootstrap document from the Hetzner metadata service and applies
# it (host key, authorized keys, instance id, expiry; see
# cloud-instance/bootstrap.sh). A warm pool machine boots with a pool
# document and gets its person later, through cc-instance-personalise.
# A person's home volume, when the document names one, is formatted once and
# mounted on the instance user's home (cloud-instance/home.sh).
# Values set here are the fallback for a machine that boots without a
# document.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkEnableOption
    mkIf
    mkOption
    mkPackageOption
    types
    ;

  cfg = config.services.cloudInstance;

  # The same patterns as internal/bootstrap and the bootstrap script.
  idPattern = "[a-z0-9][a-z0-9-]{0,62}";
  userPattern = "[a-z_][a-z0-9_-]{0,31}";
  timePattern = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})";

  # The seed wrote `cfg.expiresAt or "never"`, which keeps a null: `or` only
  # applies to a missing attribute. A null expiry means "never".
  expires = if cfg.expiresAt == null then "never" else cfg.expiresAt;

  # Where the bootstrap unit puts the document's keys; see
  # services.openssh.authorizedKeysFiles below.
  bootstrapKeysDir = "/etc/ssh/authorized_keys.bootstrap";

  sshPort = builtins.head config.services.openssh.ports;

  # sshd refuses the keys in this file for every user. Only root writes it,
  # through revokeKeyRoot, which only ever adds a key: a person can revoke
  # keys, never take a revocation back. (sshd refuses every key if the file
  # is missing, so a tmpfiles rule below makes it.)
  revokedKeys = "/etc/ssh/revoked_keys";

  # The one command the instance user may run as root: it adds one checked
  # key to revokedKeys. Its environment is fixed here, whatever sudo passes.
  revokeKeyRoot = pkgs.writeScript "cc-instance-revoke-key-root" ''
    #!${pkgs.dash}/bin/dash
    PATH=${lib.makeBinPath [ pkgs.coreutils pkgs.gnugrep pkgs.openssh ]}
    export PATH
    unset CLOUD_INSTANCE_DIR
    exec ${pkgs.dash}/bin/dash ${./cloud-instance/revoke-key.sh} "$@"
  '';

  # What the gateway runs, as the instance user, when a key leaves its allow
  # list (bootstrap.RevokeKeyCommand).
  revokeKey = pkgs.writeScriptBin "cc-instance-revoke-key" ''
    #!${pkgs.dash}/bin/dash
    exec ${config.security.wrapperDir}/sudo -n ${revokeKeyRoot} "$@"
  '';

  # The bootstrap unit's PATH, and that of its personalise mode.
  bootstrapPath = with pkgs; [
    coreutils
    curl
    jq
    openssh
  ];

  # The unit that mounts a person's home volume (see home.sh), and the file
  # in which the bootstrap script records the volume's device for it.
  homeUnit = "cloud-instance-home.service";
  homeRecord = "/var/lib/cloud-instance/home-device";

  # The second command the instance user may run as root: the bootstrap
  # script in its personalise mode, which gives a warm pool machine its
  # person from the document on standard input (see bootstrap.sh), and then
  # starts the home unit when the person has a home volume. As for
  # revokeKeyRoot, its environment is fixed here, whatever sudo passes: no
  # caller chooses which files root writes.
  personaliseRoot = pkgs.writeScript "cc-instance-personalise-root" ''
    #!${pkgs.dash}/bin/dash
    PATH=${lib.makeBinPath (bootstrapPath ++ [ config.systemd.package ])}
    export PATH
    unset CLOUD_INSTANCE_ROOT CLOUD_INSTANCE_DIR TMPDIR
    CLOUD_INSTANCE_USER=${lib.escapeShellArg cfg.user}
    CLOUD_INSTANCE_SSH_PORT=${toString sshPort}
    CLOUD_INSTANCE_HOME_UNIT=${homeUnit}
    export CLOUD_INSTANCE_USER CLOUD_INSTANCE_SSH_PORT CLOUD_INSTANCE_HOME_UNIT
    exec ${pkgs.dash}/bin/dash ${./cloud-instance/bootstrap.sh} personalise
  '';

  # What the gateway runs, as the instance user, to give a pool machine its
  # person (bootstrap.PersonaliseCommand), the document on standard input.
  personalise = pkgs.writeScriptBin "cc-instance-personalise" ''
    #!${pkgs.dash}/bin/dash
    exec ${config.security.wrapperDir}/sudo -n ${personaliseRoot}
  '';

  # cc-agent-state: records what the coding agent is doing, for the
  # gateway's reaper (bootstrap.AgentStateCommand reads it). On PATH for
  # everyone, so any agent can say it is working.
  agentState = pkgs.writeScriptBin "cc-agent-state" ''
    #!${pkgs.dash}/bin/dash
    PATH=${lib.makeBinPath [ pkgs.coreutils ]}:$PATH
    export PATH
    exec ${pkgs.dash}/bin/dash ${./cloud-instance/agent-state.sh} "$@"
  '';
  agentStateFile = "${config.users.users.${cfg.user}.home}/.local/state/cc-gateway/agent";

  # Claude Code's hooks that mark the agent's state, as managed settings:
  # they apply to every user and project, and a person's own settings add
  # to them.
  managedSettings = import ./cloud-instance/claude-hooks.nix {
    agentState = "${agentState}/bin/cc-agent-state";
  };

  claudeMd =
    builtins.replaceStrings
      [ "@gateway@" "@user@" ]
      [ cfg.gatewayHost cfg.user ]
      (builtins.readFile ../CLAUDE.cloud-instance.md);
in
{
  options.services.cloudInstance = {
    enable = mkEnableOption "this machine as a cc-gateway cloud instance";

    user = mkOption {
      type = types.strMatching userPattern;
      default = "claude";
      description = ''
        The instance user people land as. The gateway's `--instance-user`
        must name the same user: the bootstrap unit refuses a document for
        another one.
      '';
    };

    userSshKey = mkOption {
      type = types.nullOr (types.strMatching "[^\n\r]+");
      default = null;
      example = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... alice@laptop";
      description = ''
        A public key authorized for the instance user in the configuration
        itself, beside the keys of the bootstrap document. Leave it unset in
        the image the gateway boots: the document brings the person's key.
      '';
    };

    instanceId = mkOption {
      type = types.nullOr (types.strMatching idPattern);
      default = null;
      description = ''
        Instance id written to /etc/cloud-instance/id when the machine boots
        without a bootstrap document. A document's id takes precedence.
      '';
    };

    expiresAt = mkOption {
      type = types.nullOr (types.strMatching timePattern);
      default = null;
      example = "2026-01-31T18:00:00Z";
      description = ''
        RFC 3339 expiry written to /etc/cloud-instance/expires along with
        {option}`instanceId` when there is no bootstrap document; null means
        "never".
      '';
    };

    gatewayHost = mkOption {
      type = types.strMatching "[^\n\r]+";
      default = "cc.example.com";
      description = ''
        How people reach the gateway (its `--public-name`), as written in the
        notes for Claude Code and the login message, e.g. in
        `ssh cc.example.com extend 2h`.
      '';
    };

    metadataUrl = mkOption {
      type = types.str;
      default = "http://169.254.169.254/hetzner/v1/userdata";
      description = "Where the bootstrap unit fetches the server's user_data.";
    };

    claudeCode = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to install Claude Code (unfree) for everyone.";
      };
      package = mkPackageOption pkgs "claude-code" { };
    };

    packages = mkOption {
      type = types.listOf types.package;
      default = with pkgs; [
        curl
        direnv
        fd
        file
        gcc
        gh
        git
        gnumake
        htop
        jq
        neovim
        nix-direnv
        nodejs
        python3
        ripgrep
        rsync
        tree
        unzip
        wget
        zip
      ];
      defaultText = lib.literalMD "a developer tool set: git, gh, ripgrep, fd, jq, neovim, gcc, make, Python, Node.js and the like";
      description = "Packages installed for everyone besides Claude Code.";
    };
  };

  config = mkIf cfg.enable {
    users.users.${cfg.user} = {
      isNormalUser = true;
      extraGroups = [ "wheel" ];
      shell = pkgs.zsh;
      openssh.authorizedKeys.keys = lib.optional (cfg.userSshKey != null) cfg.userSshKey;
    };
    programs.zsh.enable = true;
    nix.settings.trusted-users = [ cfg.user ];

    services.openssh = {
      enable = true;
      # Only the key the gateway pins; sshd would otherwise make an RSA one too.
      hostKeys = [
        {
          type = "ed25519";
          path = "/etc/ssh/ssh_host_ed25519_key";
        }
      ];
      authorizedKeysFiles = [ "${bootstrapKeysDir}/%u" ];
      # PermitUserEnvironment: every session gets the person's secrets,
      # which the gateway writes to ~/.ssh/environment (bootstrap.SecretsFile).
      extraConfig = ''
        RevokedKeys ${revokedKeys}
        PermitUserEnvironment yes
      '';
    };

    security.sudo.extraRules = [
      {
        users = [ cfg.user ];
        commands = [
          {
            command = "${revokeKeyRoot}";
            options = [ "NOPASSWD" ];
          }
          {
            command = "${personaliseRoot}";
            options = [ "NOPASSWD" ];
          }
        ];
      }
    ];

    systemd.services.cloud-instance-bootstrap = {
      description = "Apply the cc-gateway bootstrap document";
      wantedBy = [
        "multi-user.target"
        "sshd.service"
      ];
      # sshd must start with the pinned host key and the document's keys.
      before = [ "sshd.service" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      path = bootstrapPath;
      environment = {
        CLOUD_INSTANCE_USER = cfg.user;
        CLOUD_INSTANCE_SSH_PORT = toString sshPort;
        CLOUD_INSTANCE_METADATA_URL = cfg.metadataUrl;
      }
      // lib.optionalAttrs (cfg.instanceId != null) {
        CLOUD_INSTANCE_STATIC_ID = cfg.instanceId;
        CLOUD_INSTANCE_STATIC_EXPIRES = expires;
      };
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${pkgs.dash}/bin/dash ${./cloud-instance/bootstrap.sh}";
        # Bounds the boot. The script's tries at the metadata service, for a
        # network that comes up late, end within 145 s (see bootstrap.sh).
        TimeoutStartSec = "3min";
      };
    };

    # The person's home volume, when the bootstrap document names one:
    # formatted once, mounted on the instance user's home (see home.sh).
    # sshd and logins wait for it but do not need it: when the volume never
    # appears the unit fails, mounts nothing, and the person can still log
    # in (the login message says their home is not there). Not
    # RemainAfterExit: cc-instance-personalise starts it again after a
    # claim, and starting it when the home is mounted does nothing.
    systemd.services.cloud-instance-home = {
      description = "Mount the person's home volume on the instance user's home";
      wantedBy = [
        "multi-user.target"
        "sshd.service"
      ];
      after = [ "cloud-instance-bootstrap.service" ];
      before = [
        "sshd.service"
        "systemd-user-sessions.service"
      ];
      unitConfig.ConditionPathExists = homeRecord;
      path = with pkgs; [
        coreutils
        e2fsprogs
        util-linux
      ];
      environment = {
        CLOUD_INSTANCE_USER = cfg.user;
        # The tmpfiles rule below removes it before the volume is mounted.
        CLOUD_INSTANCE_AGENT_STATE = agentStateFile;
      };
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${pkgs.dash}/bin/dash ${./cloud-instance/home.sh}";
        # The wait for the device is at most 90 s (home.sh); the first
        # format of a large volume takes a little longer.
        TimeoutStartSec = "5min";
      };
    };

    # The bootstrap unit makes the folder too; this keeps its owner right if
    # the instance user changes. Owned by the instance user, so that the
    # gateway, logged in as that user, can replace the expires file in it.
    # The old root of an infected system (see ../infect) goes at boot.
    systemd.tmpfiles.rules = [
      "d /etc/cloud-instance 0755 ${cfg.user} ${config.users.users.${cfg.user}.group} -"
      # Made empty once, never truncated: revocations outlive reboots.
      "f ${revokedKeys} 0644 root root -"
      "R! /old-root - - - - -"
      # No agent runs on a machine that just booted: forget what the last
      # one said, or a stale "working" would keep the machine running.
      "r ${agentStateFile} - - - - -"
    ];

    # The persistent terminal sessions: the gateway turns a person's
    # interactive `ssh HOST` into `tmux new-session -A -s main` here, so tmux
    # is installed whatever cfg.packages says.
    programs.tmux = {
      enable = true;
      # Several terminals of different sizes on one session: a window is as
      # small as the smallest terminal showing it, not every window.
      aggressiveResize = true;
      # Inside tmux; tmux itself reads the person's TERM, which sshd passes on.
      terminal = "tmux-256color";
      # Editors see Escape at once, not after half a second.
      escapeTime = 10;
      historyLimit = 50000;
      extraConfig = ''
        # The person's terminal's colours and keys pass through (Claude
        # Code's Shift+Enter needs the extended keys).
        set -as terminal-features ",*:RGB"
        set -s extended-keys on
        set -as terminal-features ",xterm*:extkeys"
        # A plain status line: which session this is, nothing that changes.
        set -g status-left "[#S] "
        set -g status-left-length 40
        set -g status-right ""
        set -g set-titles on
        set -g set-titles-string "#S on #h"
      '';
    };

    # Claude Code reads this file on Linux for every user and project.
    environment.etc."claude-code/CLAUDE.md".text = claudeMd;
    # Claude Code reads its managed settings from here on Linux.
    environment.etc."claude-code/managed-settings.json".text = builtins.toJSON managedSettings;

    # Every login shell, the persistent sessions' new windows among them,
    # reads the person's current secrets (see the script for why).
    environment.loginShellInit = ''
      . ${./cloud-instance/secrets-env.sh}
      if systemctl is-failed --quiet ${homeUnit} 2>/dev/null; then
        printf 'Your home volume is not mounted (journalctl -u %s says why): what you save in %s now stays on this machine and is lost with it.\n' \
          ${homeUnit} "$HOME"
      fi
      if [ -r /etc/cloud-instance/expires ]; then
        printf 'This machine expires at %s (UTC). Extend it from your computer: ssh %s extend 2h\n' \
          "$(cat /etc/cloud-instance/expires)" ${lib.escapeShellArg cfg.gatewayHost}
      fi
    '';

    environment.systemPackages = [ revokeKey ] ++ [ personalise ] ++ [ agentState ] ++ cfg.packages ++ lib.optional cfg.claudeCode.enable cfg.claudeCode.package;

    nixpkgs.config.allowUnfreePredicate = mkIf cfg.claudeCode.enable (
      pkg: builtins.elem (lib.getName pkg) [ "claude-code" ]
    );
  };
}
