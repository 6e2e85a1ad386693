"""``python -m fedloop.distributed JOB.json``: one worker rank, as the elastic agent starts it."""

import sys

from fedloop.distributed.worker import main

sys.exit(main())
