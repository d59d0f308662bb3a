"""`python -m dltool` runs the command line."""

from .cli.app import main

main()
