"""The reliability suite: what a hostile gateway, provider, client or bad luck does to a running
stack, each case against real processes (Mosquitto, ``kerbside-collector run``, ``kerbside-edge
run``, InfluxDB 1.x, a tmpfs filled to the last byte). Run it alone with ``pytest -m
reliability`` (about three minutes); it is part of every full run, each case once.

Hostile gateways (test_hostile_gateways.py): oversize payloads dead-lettered as their first KiB
and their size, and a 20 MB one never read; health for another gateway's or invented sensors
ignored and counted; a ts in 2100 refused without freezing its bay; a rejected event's corrected
retry taken; JSON nested 60,000 deep refused without a RecursionError.

Hostile clients (test_hostile_clients.py): a provider shortening or cancelling another's right
(403, no false expired); an officer naming someone else (the token's name is recorded); cursors,
limits and instants it cannot hold (a JSON 4xx naming them); occupancy bounded, four heavy
requests at once while /healthz answers; 2,000 unfinished requests under a 1,024-file limit
(/healthz answers, no traceback, a few log lines); an officer's session ending with its token.

A damaged store (test_damaged_store.py): one line naming the file, exit 2.

Faults:
- a gateway offline for an hour on a simulated clock: nothing lost, backdated, alerts as the
  records arrived (test_gateway_offline.py);
- the broker killed with a queue for the collector, persistence on (test_broker_crash.py);
- the broker away and the agent killed mid-stream: nothing lost, seq order kept
  (tests/e2e/test_edge_runtime.py::test_broker_outage_and_agent_sigkill_lose_nothing_and_keep_order);
- the collector SIGKILLed at least five times mid-stream: every event once, no alert twice,
  alerts equal replay (tests/e2e/test_collector_recovery.py);
- InfluxDB stopped for a third of a 2.5-hour street: every point once
  (tests/e2e/test_influx_fault.py);
- a full disk under the edge agent's outbox (tests/e2e/test_edge_disk_full.py) and under the
  collector's store, with the year-999 event and an unreadable journal record beside it
  (tests/e2e/test_collector_faults.py): each resumes by itself once space returns, nothing
  acknowledged is lost;
- a collector's PostgreSQL stopped under load and started again, and the collector killed while
  it was down: /healthz 503 and the log say so, it resumes by itself, every event stored once
  (tests/e2e/test_postgres_lost.py).
"""
