"""`python -m slackwater` and the `slackwater` command.

Engines that start processes of their own by spawning (vLLM's engine core and its
workers) run the main module again in each. This one imports nothing heavy at the top,
and in such a process asks to die with the process that started it
(`die_with_parent`), so that a SIGKILLed worker leaves no engine behind.
"""

import sys

from slackwater.runtime.process import die_with_parent


def run() -> None:
    main = sys.modules["__main__"]
    if getattr(main, "__file__", None) == __file__:
        # Run as `python -m slackwater`: spawned processes would import a package's
        # __main__ by name, which multiprocessing skips; by path they run this file.
        main.__spec__ = None
    from slackwater.cli import main as cli

    cli()


if __name__ == "__main__":
    run()
else:
    die_with_parent()  # run again in a spawned process (a no-op anywhere else)
