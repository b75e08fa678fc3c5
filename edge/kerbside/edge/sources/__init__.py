"""Sources of sensor data (serial ports, BLE) behind one abstract base, ``Source``."""

from kerbside.edge.sources.base import BleAdvert, Emit, Received, SerialChunk, Source

__all__ = ["BleAdvert", "Emit", "Received", "SerialChunk", "Source"]
