import sys

from loadtest.bench.cli import main

sys.exit(main(sys.argv[1:], prog="python -m loadtest.bench"))
