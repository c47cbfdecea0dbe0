# system.build.hcloudImage: the machine as a disk image for a Hetzner Cloud
# snapshot (see docs/nixos.md). A raw disk with an MBR partition table and one
# ext4 partition labelled "nixos", grown to the server's disk at first boot,
# GRUB in the MBR, compressed with zstd for hcloud-upload-image.
{
  config,
  lib,
  pkgs,
  modulesPath,
  ...
}:

{
  system.build.hcloudImage = import (modulesPath + "/../lib/make-disk-image.nix") {
    inherit config lib pkgs;
    name = "cc-gateway-hcloud-image";
    format = "raw";
    partitionTableType = "legacy";
    fsType = "ext4";
    label = "nixos";
    diskSize = "auto";
    additionalSpace = "1024M";
    # The flake pins nixpkgs; a channel in the image would only go stale.
    copyChannel = false;
    postVM = ''
      ${pkgs.zstd}/bin/zstd -T0 --rm "$diskImage" -o "$out/nixos.img.zst"
    '';
  };
}
