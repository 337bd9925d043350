import sys

from lur_jax.cli import main

sys.exit(main())
