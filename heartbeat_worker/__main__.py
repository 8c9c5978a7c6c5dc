"""python -m heartbeat_worker: expires the silent, so their places and units come back.

Expires people waiting whose last heartbeat is older than heartbeat_timeout, admissions
not claimed within claim_window, and sessions past their deadline. Runs any number of
replicas; one holds each room's heartbeat lease at a time. Also relays room outboxes to
JetStream unless WAITROOM_RELAY=false.

Environment: WAITROOM_REDIS_URL; WAITROOM_NATS_URL (one URL or a comma-separated list);
WAITROOM_HEARTBEAT_TICK_MS (500); WAITROOM_LEASE_MS (3000);
WAITROOM_ENDED_RETENTION (3600 s); WAITROOM_RELAY (true);
WAITROOM_OUTBOX_MAX (100000: a room's backlog past it is logged); WAITROOM_STREAM
(WAITROOM); WAITROOM_STREAM_REPLICAS (1); WAITROOM_DUPLICATE_WINDOW (7200 s);
WAITROOM_INSTANCE (host-pid; use the pod name); WAITROOM_LOG_JSON (true);
WAITROOM_LOG_LEVEL (info). SIGTERM stops it gracefully: the tick in hand finishes, the
outboxes it relays are delivered, its leases are released.
"""

import sys

from heartbeat_worker.worker import run
from shared.worker_process import worker_main

if __name__ == "__main__":
    worker_main("heartbeat", run, __doc__ or "", sys.argv[1:])
