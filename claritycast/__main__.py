"""`python -m claritycast` is the `claritycast` command (how `up` starts its worker)."""

from claritycast.cli.main import main

if __name__ == "__main__":
    main()
