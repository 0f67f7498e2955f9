from slackwater.cli import main

main()
