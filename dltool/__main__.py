"""`python -m dltool` runs the command line."""

from .cli import main

main()
