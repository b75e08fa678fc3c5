"""Several collectors on one PostgreSQL store (``cluster: {node_id, lease_s}`` in the config).

Any collector ingests: the broker shares the gateways' events between them (``mqtt.shared_group``),
and each stores the events it receives in the journal (``core.py`` with ``rules_here`` off),
acknowledging them only after the commit. The rules run per zone, each zone on the one
collector that holds its lease (``leases.py``): that collector follows the journal, its own
zones' records in commit order (``beat.py``), and decides, publishes and stores exactly what a
single collector would. A collector that stops renewing loses its zones to the others, who
restore each zone's saved rules and re-execute the journal after them; the rules' clock is
itself in the journal (each record's watermark, and ticks), so every collector that follows a
zone's records decides the same, and a new owner carries on exactly where the last stopped,
repeating none of the effects the last one stored (the lease keeps how far they reach). The
gateways' statuses and health reports go to every collector; the maintenance alerts of
gateways have a lease of their own. Every collector serves the whole API from the store, and
its alert stream follows the store's alert changes (``listen.py``).
"""
