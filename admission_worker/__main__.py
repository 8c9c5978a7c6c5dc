"""python -m admission_worker: lets people in, per room, at the room's pace.

Runs any number of replicas; one holds each room's admission lease at a time. Also relays
room outboxes to JetStream unless WAITROOM_RELAY=false.

Environment: WAITROOM_REDIS_URL; WAITROOM_NATS_URL (one URL or a comma-separated list);
WAITROOM_ADMISSION_TICK_MS (100); WAITROOM_LEASE_MS (3000); WAITROOM_RELAY (true);
WAITROOM_OUTBOX_MAX (100000: a room's backlog past it is logged); WAITROOM_STREAM
(WAITROOM); WAITROOM_STREAM_REPLICAS (1); WAITROOM_DUPLICATE_WINDOW (7200 s);
WAITROOM_INSTANCE (host-pid; use the pod name); WAITROOM_LOG_JSON (true);
WAITROOM_LOG_LEVEL (info). SIGTERM stops it gracefully: the tick in hand finishes, the
outboxes it relays are delivered, its leases are released.
"""

import sys

from admission_worker.worker import run
from shared.worker_process import worker_main

if __name__ == "__main__":
    worker_main("admission", run, __doc__ or "", sys.argv[1:])
