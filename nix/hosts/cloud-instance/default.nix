# The cloud-instance host: a small NixOS for a Hetzner Cloud server (x86,
# BIOS boot), personalised at boot by services.cloudInstance. mkCloudInstance
# in ../../flake.nix builds it; `hostname` comes from there.
{ hostname, ... }:

{
  imports = [
    ./hardware-configuration.nix
    ./networking.nix
    ../../modules/cloud-instance.nix
    ../../modules/hcloud-image.nix
  ];

  networking.hostName = hostname;

  # GRUB in the MBR of the first disk: Hetzner's x86 servers boot by BIOS.
  boot.loader.grub.enable = true;
  boot.loader.grub.device = "/dev/sda";
  boot.loader.timeout = 1;
  # Kernel messages on Hetzner's web console and on the serial port.
  boot.kernelParams = [
    "console=ttyS0,115200"
    "console=tty0"
  ];

  zramSwap.enable = true;
  boot.tmp.cleanOnBoot = true;

  # Users come from this configuration only; the instance user has no
  # password and logs in with keys.
  users.mutableUsers = false;
  security.sudo.wheelNeedsPassword = false;

  services.openssh.settings = {
    PasswordAuthentication = false;
    KbdInteractiveAuthentication = false;
    PermitRootLogin = "no";
  };

  nix.settings.experimental-features = [
    "nix-command"
    "flakes"
  ];

  # Machines live hours or days; a small image boots faster.
  documentation.nixos.enable = false;

  time.timeZone = "UTC";
  i18n.defaultLocale = "en_US.UTF-8";
  system.stateVersion = "24.11";
}
