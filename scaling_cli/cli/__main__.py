"""`python -m scaling_cli.cli`: the same as the `scale` command."""

from scaling_cli.cli import main

main()
