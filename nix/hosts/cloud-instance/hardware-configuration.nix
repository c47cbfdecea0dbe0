# Hetzner Cloud's x86 servers: QEMU/KVM with virtio disks and network. The
# root file system is found by its label, which the disk image sets and the
# infect path gives the stock image's root, so one configuration serves both.
{ lib, modulesPath, ... }:

{
  imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];

  boot.initrd.availableKernelModules = [
    "ata_piix"
    "uhci_hcd"
    "virtio_pci"
    "virtio_scsi"
    "virtio_blk"
    "virtio_net"
    "sd_mod"
    "sr_mod"
  ];

  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    # The image is small; the server's disk is not.
    autoResize = true;
  };
  boot.growPartition = true;

  # Hetzner's console uses the guest agent, e.g. to reset a password.
  services.qemuGuest.enable = true;

  nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
}
