"""`python -m mmdemo` is the `mmdemo` command."""

from mmdemo.cli import main

main()
