"""`python -m launcher.report`: compare finished runs (see cli.py)."""

if __name__ == "__main__":
    import sys

    from launcher.report.cli import main

    sys.exit(main())
