# Renders the gateway's config file (the format of internal/config: one
# "name = value" line per option, no quoting) from an attribute set of option
# names and values. Null values are left out, so the gateway's own defaults
# apply. Only builtins, so that a test can evaluate it without nixpkgs.
settings:

let
  render =
    name: value:
    let
      text =
        if builtins.isString value then
          value
        # A Nix path, such as an allow list kept beside the configuration,
        # or a package's output, is a file in the store.
        else if builtins.isPath value || (builtins.isAttrs value && value ? outPath) then
          "${value}"
        else if builtins.isInt value then
          toString value
        # A switch, such as pprof.
        else if builtins.isBool value then
          (if value then "true" else "false")
        else
          throw "cc-gateway setting ${name}: a ${builtins.typeOf value} is neither a string, an integer nor a boolean";
    in
    if builtins.match "[a-z][a-z0-9-]*" name == null then
      throw "cc-gateway setting ${name}: not an option name (lower case, dashes)"
    else if builtins.match "[^\n\r]*" text == null then
      throw "cc-gateway setting ${name}: the config file has no way to write a line break"
    else if builtins.match "([ \t].*|.*[ \t])" text != null then
      throw "cc-gateway setting ${name}: the config file trims blanks around a value"
    else
      "${name} = ${text}\n";

  # A submodule's value may carry the module system's own _module.
  names = builtins.filter (name: name != "_module" && settings.${name} != null) (
    builtins.attrNames settings
  );
in
"# Written by the cc-gateway NixOS module; see `cc-gateway --help`.\n"
+ builtins.concatStringsSep "" (map (name: render name settings.${name}) names)
