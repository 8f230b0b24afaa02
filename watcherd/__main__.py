"""Allow ``python -m watcherd``."""

from watcherd.cli import main

if __name__ == "__main__":
    main()
