"""`python -m slackwater` and the `slackwater` command.

The CLI is imported when run, not when this module is imported: engines that start
processes of their own by spawning (vLLM's engine core and its workers) import the main
module again in each, and should not pay for the whole CLI and server there.
"""


def run() -> None:
    from slackwater.cli import main

    main()


if __name__ == "__main__":
    run()
