"""`python -m haggler ...` runs the CLI (the service starts its learner process this way)."""

from haggler.cli.main import main

if __name__ == "__main__":  # a benchmark's worker processes import this module too (spawn)
    main()
