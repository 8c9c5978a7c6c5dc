"""python -m admission_worker: lets people in, per room, at the room's pace.

Runs any number of replicas; one holds each room's admission lease at a time. Also relays
room outboxes to JetStream unless WAITROOM_RELAY=false. SIGTERM stops it gracefully: the
tick in hand finishes, the outboxes it relays are delivered, its leases are released.
"""

import sys

from admission_worker.worker import run
from shared.settings import Part
from shared.worker_process import worker_main

if __name__ == "__main__":
    worker_main("admission", Part.ADMISSION, run, __doc__ or "", sys.argv[1:])
