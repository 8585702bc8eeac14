"""`python -m haggler ...` runs the CLI (the service starts its learner process this way)."""

from haggler.cli import main

main()
