import sys

from maskfocal.cli import main

sys.exit(main())
