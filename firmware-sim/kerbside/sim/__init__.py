"""Firmware simulator: magnetometer bay sensors with real physics and real faults, a street of
vehicles with ground truth, emitting KBS1 (captures, pseudo-terminals) and BLE adverts."""
