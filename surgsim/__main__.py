import sys

from surgsim.cli import main

sys.exit(main())
