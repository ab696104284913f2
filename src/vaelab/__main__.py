"""`python -m vaelab <command> [overrides]`: the console commands as a module, e.g.
`python -m vaelab train model.beta=4` is `vaelab-train model.beta=4`."""

import os
import sys

from vaelab import cli

COMMANDS = {"train": cli.train, "eval": cli.evaluate, "viz": cli.viz, "attr": cli.attr,
            "report": cli.report, "explore": cli.explore}
#: the command, for the DDP ranks Lightning launches by re-running `python -m vaelab.__main__`
#: with this process's remaining arguments (the command name no longer among them)
COMMAND_ENV = "VAELAB_COMMAND"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        os.environ[COMMAND_ENV] = sys.argv.pop(1)
    command = os.environ.get(COMMAND_ENV)
    if command not in COMMANDS:
        sys.exit(f"usage: python -m vaelab {{{','.join(COMMANDS)}}} [overrides] "
                 "(the same as vaelab-train, vaelab-eval, vaelab-viz, vaelab-attr, vaelab-report, "
                 "vaelab-explore)")
    COMMANDS[command]()


if __name__ == "__main__":
    main()
