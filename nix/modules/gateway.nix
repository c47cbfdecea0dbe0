# services.cc-gateway: the gateway as a hardened systemd service.
#
# services.cc-gateway.settings mirrors the gateway's options (`cc-gateway
# --help`) by name and goes to its config file; options this module does not
# know yet pass through as they are. The Hetzner token never enters the Nix
# store: systemd hands the file named by hcloudTokenFile to the service as a
# credential, and the gateway reads it with --hcloud-token-file. The etcd
# client TLS files (etcd.caFile, certFile, keyFile) travel the same way.
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

  cfg = config.services.cc-gateway;

  stateDir = "/var/lib/cc-gateway";

  duration = types.strMatching "([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+";
  line = types.strMatching "[^\n\r]*";
  # A file for the gateway to read: a Nix path is copied to the store, a
  # string names a file on the machine, which the gateway re-reads on change.
  file = types.either types.path (types.strMatching "/[^\n\r]*");

  # An option of the gateway; null leaves the gateway's default.
  setting =
    type: description:
    mkOption {
      type = types.nullOr type;
      default = null;
      inherit description;
    };

  keysFile = name: keys: pkgs.writeText "cc-gateway-${name}" (lib.concatMapStrings (k: k + "\n") keys);

  configFile = pkgs.writeText "cc-gateway.conf" (import ./gateway/config-file.nix cfg.settings);

  # The etcd TLS files given: each the gateway's option, the credential's
  # name and the file it comes from.
  etcdCredentials = lib.filter (c: c.file != null) [
    {
      option = "--etcd-ca";
      name = "etcd-ca";
      file = cfg.etcd.caFile;
    }
    {
      option = "--etcd-cert";
      name = "etcd-cert";
      file = cfg.etcd.certFile;
    }
    {
      option = "--etcd-key";
      name = "etcd-key";
      file = cfg.etcd.keyFile;
    }
  ];

  listenPort = lib.toInt (lib.last (lib.splitString ":" cfg.settings.listen));
in
{
  options.services.cc-gateway = {
    enable = mkEnableOption "cc-gateway, the SSH gateway to per-person cloud machines";

    package = mkPackageOption pkgs "cc-gateway" { };

    hcloudTokenFile = mkOption {
      type = types.nullOr (types.strMatching "/[^\n\r]*");
      default = null;
      example = "/run/secrets/hcloud-token";
      description = ''
        File holding the Hetzner Cloud API token, readable by root. It is
        passed to the service as a systemd credential (LoadCredential=) and
        never copied to the Nix store; give a path as a string, not a Nix
        path.
      '';
    };

    etcd = {
      caFile = mkOption {
        type = types.nullOr (types.strMatching "/[^\n\r]*");
        default = null;
        example = "/run/secrets/etcd-ca.pem";
        description = ''
          PEM CA certificates that signed the etcd members' server
          certificates (null: the system's roots). Like the client
          certificate and key, it is passed to the service as a systemd
          credential (LoadCredential=), so the file may stay readable by root
          only, and is never copied to the Nix store: give a string.
        '';
      };
      certFile = mkOption {
        type = types.nullOr (types.strMatching "/[^\n\r]*");
        default = null;
        example = "/run/secrets/etcd-gateway.pem";
        description = "PEM client certificate the gateway presents to etcd; needs keyFile.";
      };
      keyFile = mkOption {
        type = types.nullOr (types.strMatching "/[^\n\r]*");
        default = null;
        example = "/run/secrets/etcd-gateway-key.pem";
        description = "PEM private key of certFile.";
      };
    };

    allowedKeys = mkOption {
      type = types.listOf (types.strMatching "[^\n\r]+");
      default = [ ];
      example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... alice@laptop" ];
      description = ''
        Public keys of the people allowed in, written to the store as the
        `users` allow list. To edit the list without a rebuild, set
        `settings.users` to a file on the machine instead.
      '';
    };

    adminKeys = mkOption {
      type = types.listOf (types.strMatching "[^\n\r]+");
      default = [ ];
      description = "Public keys allowed to run admin commands, written to the store as the `admins` list.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to open the port of `settings.listen` in the firewall.";
    };

    settings = mkOption {
      default = { };
      description = ''
        The gateway's options, named as its flags without the dashes in
        front; see `cc-gateway --help`. Null leaves the gateway's default.
        `config`, `hcloud-token-file` and the etcd TLS files (`etcd-ca`,
        `etcd-cert`, `etcd-key`: see `etcd`) are set by this module.
      '';
      type = types.submodule {
        freeformType = types.attrsOf (
          types.nullOr (
            types.oneOf [
              line
              types.int
              types.bool
              types.path
            ]
          )
        );
        options = {
          listen = mkOption {
            type = types.strMatching ".*:[0-9]+";
            default = ":22";
            description = "host:port the SSH front door listens on.";
          };
          "public-name" = setting line "How people reach the gateway, shown in hints, e.g. cc.example.com.";
          "data-dir" = mkOption {
            type = types.str;
            default = stateDir;
            description = "Directory of the lease database; within ${stateDir}, the service's state directory.";
          };
          "host-key-dir" = mkOption {
            type = types.str;
            default = "${stateDir}/hostkeys";
            description = "Directory of the gateway's host keys; within ${stateDir}.";
          };
          users = setting file "authorized_keys file of the people allowed in; required in hcloud mode.";
          admins = setting file "authorized_keys file of the keys allowed to run admin commands.";
          cloud = mkOption {
            type = types.enum [
              "local"
              "hcloud"
            ];
            default = "hcloud";
            description = "Where machines run: Hetzner Cloud, or the built-in local cloud (for trying it out).";
          };
          "hcloud-endpoint" = setting line "Hetzner Cloud API base URL; null for Hetzner's own.";
          "default-ttl" = setting duration "How long a new lease lasts before it expires (gateway default 4h).";
          "max-ttl" = setting duration "The furthest ahead of now an expiry may be extended (24h).";
          "max-lifetime" = setting duration "The longest a machine may live from its creation (168h).";
          "idle-timeout" = setting duration "A machine without sessions or traffic this long is idle (30m).";
          "idle-action" = setting (types.enum [
            "stop"
            "hibernate"
            "destroy"
          ]) "What happens to an idle machine: power off keeping the disk, snapshot then delete the server, or delete everything (stop).";
          "busy-cpu" = setting (types.ints.between 0 100) "An idle machine using at least this much CPU, in percent, is left running; 0 never checks (10).";
          "max-unattended" = setting duration "How long after a person's last activity a working agent keeps their machine running; at most the idle timeout: agents keep nothing (8h).";
          "warn-before" = setting (types.strMatching "([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+(,([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+)*") "Comma-separated lead times of the warnings before an idle stop or an expiry (15m,5m,1m).";
          "notify-allow-private" = setting types.bool "Let people's notification targets be on private networks, and plain http (false: https to public addresses only).";
          "reaper-interval" = setting duration "How often the reaper looks at every lease (30s).";
          "reconcile-interval" = setting duration "How often leases are reconciled with the cloud's servers (5m).";
          "orphan-grace" = setting duration "How old a labelled server or snapshot without a lease must be before reconcile takes it for an orphan, and how long it then stays one before it is deleted (10m).";
          orphans = setting (types.enum [
            "delete"
            "keep"
          ]) "What reconcile does with orphans: power off, then delete when still unclaimed a grace later; or keep and report them (delete).";
          "orphan-deletes" = setting (types.ints.between 1 1000) "The most orphans one reconcile deletes (3).";
          "instance-user" = setting (types.strMatching "[a-z_][a-z0-9_-]{0,31}") ''
            Unix user people land as on their machine (claude); the image's
            services.cloudInstance.user must be the same.
          '';
          "server-type" = setting line "Hetzner server types of new machines, comma-separated in order of preference, cheapest first (cx23).";
          location = setting line "Hetzner locations of new machines, comma-separated in order of preference; a sold-out one is skipped (fsn1).";
          image = setting line "Image of new machines when no image matches image-selector (debian-12).";
          "image-selector" = setting line "Label selector of the machine image; the newest match wins (cc-gateway=image).";
          "machine-ssh-port" = setting types.port "Port the machines' sshd listens on (22).";
          "etcd-endpoints" = setting (types.strMatching "https?://[^,\n\r ]+(,https?://[^,\n\r ]+)*") ''
            Client URLs of the etcd members, comma-separated, like
            https://10.0.0.2:2379,https://10.0.0.3:2379,https://10.0.0.4:2379:
            the lease store is then in etcd, shared by every gateway on the
            same prefix (null: bbolt in data-dir, one gateway). See docs/ha.md.
          '';
          "etcd-prefix" = setting (types.strMatching "/([^\n\r]*/)?") "Where the gateway keeps its keys in etcd; gateways on one prefix share leases (/cc-gateway/).";
          "gateway-name" = setting line "Name in the labels of everything this gateway creates; one per gateway sharing a project.";
          "local-machines" = setting (types.enum [
            "builtin"
            "openssh"
          ]) "Local mode only: machines as in-process SSH servers, or as real sshd processes.";
          "shutdown-grace" = setting duration "On stop, how long open sessions get to end (10s).";
          "max-startups" = setting (types.strMatching "[0-9]+(:[0-9]+:[0-9]+)?") "Connections not yet authenticated, START:RATE:FULL as sshd's MaxStartups: from START new ones are dropped with a chance of RATE percent, rising to all at FULL (10:30:100).";
          "max-startups-per-source" = setting types.ints.positive "Connections not yet authenticated one address (an IPv6 /64) may hold (8).";
          "max-sessions" = setting types.ints.positive "Session channels one client connection may have open at once; sshd's MaxSessions (10).";
          "max-connections" = setting types.ints.positive "Connections one key may have open at once (20).";
          "max-early-requests" = setting types.ints.positive "Requests (env, pty-req, window-change) a session may send before its program starts (64).";
          "max-early-bytes" = setting types.ints.positive "Bytes those requests may carry in total (65536).";
          "global-request-rate" = setting types.ints.positive "Global requests (keepalives, remote forwards) a second per connection (10).";
          "global-request-burst" = setting types.ints.positive "Global requests at once beyond the rate; a connection refused this many in a row is closed (100).";
          "metrics-listen" = setting (types.strMatching "[^\n\r ]*:[0-9]+") ''
            host:port of the HTTP listener serving Prometheus metrics at
            /metrics, with /healthz and /readyz, like 127.0.0.1:9464 (off).
            Nothing there asks who is calling: keep it on loopback or a
            private network only your Prometheus reaches. openFirewall never
            opens its port.
          '';
          pprof = setting types.bool "Also serve Go's profiler at /debug/pprof/ on the metrics listener, for a debugging session (false); needs metrics-listen.";
          "local-faults" = setting line "Local mode only, for testing: faults the fake Hetzner API injects, e.g. rate=0.2,seed=7.";
          "local-boot-delay" = setting duration "Local mode only: how long a machine takes from create or power-on until its SSH answers (0s).";
          "local-action-delay" = setting duration "Local mode only: how long the fake Hetzner API's actions stay running (0.5s).";
          "log-level" = setting (types.enum [
            "debug"
            "info"
            "warn"
            "error"
          ]) "debug, info, warn or error (info).";
        };
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = !(cfg.settings ? config) && !(cfg.settings ? "hcloud-token-file");
        message = "services.cc-gateway.settings: config and hcloud-token-file are set by the module; use hcloudTokenFile for the token.";
      }
      {
        assertion = cfg.settings.cloud == "hcloud" -> cfg.hcloudTokenFile != null;
        message = "services.cc-gateway: hcloud mode needs hcloudTokenFile.";
      }
      {
        assertion = cfg.settings.cloud == "hcloud" -> cfg.settings.users != null;
        message = "services.cc-gateway: hcloud mode needs an allow list: allowedKeys or settings.users.";
      }
      {
        assertion = !(cfg.settings ? "etcd-ca" || cfg.settings ? "etcd-cert" || cfg.settings ? "etcd-key");
        message = "services.cc-gateway.settings: etcd-ca, etcd-cert and etcd-key are set by the module; use etcd.caFile, etcd.certFile and etcd.keyFile.";
      }
      {
        assertion = (cfg.etcd.certFile == null) == (cfg.etcd.keyFile == null);
        message = "services.cc-gateway.etcd: give both certFile and keyFile, or neither.";
      }
      {
        assertion = etcdCredentials != [ ] -> cfg.settings."etcd-endpoints" != null;
        message = "services.cc-gateway.etcd: the TLS files are for etcd; set settings.etcd-endpoints too.";
      }
      {
        assertion = cfg.settings.pprof == true -> cfg.settings."metrics-listen" != null;
        message = "services.cc-gateway.settings: pprof is served on the metrics listener; set metrics-listen too, like \"127.0.0.1:9464\".";
      }
      {
        assertion = lib.all (d: lib.hasPrefix stateDir d) [
          cfg.settings."data-dir"
          cfg.settings."host-key-dir"
        ];
        message = "services.cc-gateway: data-dir and host-key-dir must be within ${stateDir}, the only place the service may write.";
      }
    ];

    services.cc-gateway.settings = {
      users = lib.mkIf (cfg.allowedKeys != [ ]) (lib.mkDefault "${keysFile "users" cfg.allowedKeys}");
      admins = lib.mkIf (cfg.adminKeys != [ ]) (lib.mkDefault "${keysFile "admins" cfg.adminKeys}");
    };

    systemd.services.cc-gateway = {
      description = "cc-gateway, the SSH gateway to per-person cloud machines";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];

      serviceConfig = {
        ExecStart = lib.concatStringsSep " " (
          [
            (lib.getExe cfg.package)
            "--config"
            "${configFile}"
          ]
          # %d is the service's credentials directory.
          ++ lib.optionals (cfg.hcloudTokenFile != null) [
            "--hcloud-token-file"
            "%d/hcloud-token"
          ]
          ++ lib.concatMap (c: [
            c.option
            "%d/${c.name}"
          ]) etcdCredentials
        );
        LoadCredential =
          lib.optional (cfg.hcloudTokenFile != null) "hcloud-token:${cfg.hcloudTokenFile}"
          ++ map (c: "${c.name}:${c.file}") etcdCredentials;
        # The gateway re-reads its allow lists on SIGHUP.
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Restart = "on-failure";
        RestartSec = "5s";

        DynamicUser = true;
        StateDirectory = "cc-gateway";
        StateDirectoryMode = "0700";
        WorkingDirectory = stateDir;
        UMask = "0077";
        LimitNOFILE = 65536;

        # Port 22 and nothing else of root's.
        AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
        CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ];
        NoNewPrivileges = true;

        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        DevicePolicy = "closed";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
        # Refuse a filtered call rather than kill the gateway for it.
        SystemCallErrorNumber = "EPERM";
      };
    };

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall listenPort;
  };
}
