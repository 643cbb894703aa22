"""``python -m omnipkg_hook.workers --fd N [--pins P] [--zygote]``: a worker process."""

import sys

from omnipkg_hook.workers.process import main

if __name__ == "__main__":
    sys.exit(main())
