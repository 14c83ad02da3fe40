import sys

from mpigd.cli import main

sys.exit(main())
