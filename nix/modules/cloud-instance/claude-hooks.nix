# Claude Code's managed settings that mark the agent's state for the
# gateway's reaper: working when a prompt is submitted or a tool runs,
# waiting when it asks for permission or input (its notifications), idle
# when it stops. agentState is the path of the cc-agent-state command.
# Plain Nix without nixpkgs, so a test evaluates it.
{ agentState }:
let
  hook = state: {
    type = "command";
    command = "${agentState} ${state}";
  };
  # Tool events take a matcher; "*" is every tool.
  onTools = state: [
    {
      matcher = "*";
      hooks = [ (hook state) ];
    }
  ];
  always = state: [ { hooks = [ (hook state) ]; } ];
in
{
  hooks = {
    UserPromptSubmit = always "working";
    PreToolUse = onTools "working";
    PostToolUse = onTools "working";
    Notification = always "waiting";
    Stop = always "idle";
  };
}
