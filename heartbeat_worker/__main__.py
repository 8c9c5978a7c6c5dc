"""python -m heartbeat_worker: expires the silent, so their places and units come back.

Expires people waiting whose last heartbeat is older than heartbeat_timeout, admissions
not claimed within claim_window, and sessions past their deadline. Runs any number of
replicas; one holds each room's heartbeat lease at a time. Also relays room outboxes to
JetStream unless WAITROOM_RELAY=false. SIGTERM stops it gracefully: the tick in hand
finishes, the outboxes it relays are delivered, its leases are released.
"""

import sys

from heartbeat_worker.worker import run
from shared.settings import Part
from shared.worker_process import worker_main

if __name__ == "__main__":
    worker_main("heartbeat", Part.HEARTBEAT, run, __doc__ or "", sys.argv[1:])
