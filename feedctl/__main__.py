"""`python -m feedctl` is the `feedctl` command."""

from feedctl.cli.app import main

main()
