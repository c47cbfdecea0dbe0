{
  description = "cc-gateway: the gateway, its NixOS module, and the NixOS machines it hands out";

  # Build from the repository's root: nix build ./nix#hcloud-image
  # The first build writes flake.lock next to this file; commit it.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # mkCloudInstance builds a machine's NixOS system. Every argument is
      # optional: the image the gateway boots is built without the
      # per-machine ones, which the bootstrap document brings at boot; values
      # given here are what a machine has without a document.
      #   instanceId   written to /etc/cloud-instance/id without a document
      #   userSshKey   a public key authorized for the user in the configuration
      #   expiresAt    RFC 3339 expiry to go with instanceId; null is "never"
      #   user         the instance user, the gateway's --instance-user
      #   gatewayHost  how people reach the gateway, for the notes on the machine
      #   modules      further NixOS modules, e.g. more packages
      mkCloudInstance =
        {
          instanceId ? null,
          userSshKey ? null,
          expiresAt ? null,
          user ? "claude",
          gatewayHost ? "cc.example.com",
          modules ? [ ],
        }:
        lib.nixosSystem {
          specialArgs.hostname = if instanceId == null then "cc-instance" else "cc-${instanceId}";
          modules = [
            ./hosts/cloud-instance
            {
              services.cloudInstance = {
                enable = true;
                inherit
                  instanceId
                  userSshKey
                  expiresAt
                  user
                  gatewayHost
                  ;
              };
              # `nix shell nixpkgs#…` on the machine uses the nixpkgs it was built from.
              nix.registry.nixpkgs.flake = nixpkgs;
              nix.nixPath = [ "nixpkgs=${nixpkgs}" ];
            }
          ]
          ++ modules;
        };
    in
    {
      lib = { inherit mkCloudInstance; };

      nixosModules = {
        cloudInstance = ./modules/cloud-instance.nix;
        # The gateway's module, with this flake's package as its default.
        gateway =
          { pkgs, ... }:
          {
            imports = [ ./modules/gateway.nix ];
            services.cc-gateway.package =
              lib.mkDefault
                self.packages.${pkgs.stdenv.hostPlatform.system}.cc-gateway;
          };
        default = self.nixosModules.gateway;
      };

      overlays.default = final: prev: { cc-gateway = final.callPackage ./package.nix { }; };

      # The template the image is built from: no per-machine values but an id
      # that says so, for a server booted without user_data.
      nixosConfigurations.cloud-instance = mkCloudInstance { instanceId = "template"; };

      packages = lib.recursiveUpdate (forAllSystems (pkgs: rec {
        cc-gateway = pkgs.callPackage ./package.nix { };
        default = cc-gateway;
      })) {
        # Hetzner's x86 servers; upload it with hcloud-upload-image.
        x86_64-linux.hcloud-image = self.nixosConfigurations.cloud-instance.config.system.build.hcloudImage;
      };
    };
}
