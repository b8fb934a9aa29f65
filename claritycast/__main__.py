"""`python -m claritycast` is the `claritycast` command (how `up` starts its worker)."""

from claritycast.cli import main

if __name__ == "__main__":
    main()
