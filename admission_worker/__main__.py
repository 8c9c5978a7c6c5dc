"""python -m admission_worker: lets people in, per room, at the room's pace.

Runs any number of replicas; one holds each room's admission lease at a time. A room with
auto_release is let in at the pace its site's latency allows (never above release_rate).
Also relays room outboxes to JetStream unless WAITROOM_RELAY=false, and ends the visits
the protected site reports on NATS (waitroom-site.<room>.completed / .failed, one queue
group for all replicas), checking their access tokens with the keys in WAITROOM_KEYS_DIR.
SIGTERM stops it gracefully: the tick in hand finishes, the outboxes it relays are
delivered, its leases are released.
"""

import sys

from admission_worker.worker import run
from shared.settings import Part
from shared.worker_process import worker_main

if __name__ == "__main__":
    worker_main("admission", Part.ADMISSION, run, __doc__ or "", sys.argv[1:])
