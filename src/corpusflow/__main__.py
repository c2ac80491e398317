"""`python -m corpusflow ...`: the same command as `corpusflow ...`."""

from corpusflow.cli import main

main()
