"""`python -m backoffice.cli`: the same as the `backoffice` command."""

from backoffice.cli import console

console()
