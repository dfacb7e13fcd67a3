import sys

from .cli import main

if __name__ == "__main__":  # spawned storm processes import this module too
    sys.exit(main())
