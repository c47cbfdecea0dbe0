# DHCP on every interface, which is how Hetzner Cloud hands out a server's
# IPv4 address; the firewall lets in SSH only.
{ config, ... }:

{
  networking = {
    useDHCP = true;
    firewall = {
      enable = true;
      allowedTCPPorts = config.services.openssh.ports;
    };
  };
}
