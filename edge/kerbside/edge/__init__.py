"""The street gateway's agent: KBS1 and BLE in, confirmed occupancy events out over MQTT."""
