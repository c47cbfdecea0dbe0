# The gateway, built from this repository.
{
  lib,
  buildGoModule,
}:

buildGoModule {
  pname = "cc-gateway";
  version = "0.1.0-unstable";

  # Only what the build reads, so that edits to docs or tests elsewhere do
  # not rebuild it.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../go.mod
      ../go.sum
      ../cmd
      ../internal
      ./nix.go
      ./infect
    ];
  };

  # The hash of the Go module dependencies (the NAR hash of `go mod vendor`'s
  # output). It changes whenever go.sum does; a test (nix/nix_test.go)
  # recomputes it and fails when this line is stale. See docs/nixos.md.
  vendorHash = "sha256-+S56gcOOEPTHKLnrDs1YLnXd7MWk6ZUfKkkiBg992WI=";

  subPackages = [ "cmd/gateway" ];
  env.CGO_ENABLED = 0;
  ldflags = [
    "-s"
    "-w"
  ];

  # The tests need OpenSSH servers, loopback networking and more time than a
  # package build should take; .ci/run runs them.
  doCheck = false;

  postInstall = ''
    mv $out/bin/gateway $out/bin/cc-gateway
  '';

  meta = {
    description = "SSH gateway that gives every person their own cloud machine on demand";
    homepage = "https://github.com/cc-gateway/cc-gateway";
    mainProgram = "cc-gateway";
    platforms = lib.platforms.linux;
  };
}
