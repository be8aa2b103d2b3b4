"""The calibration engine in parts: statistics (hooks), offload (moving blocks), replay (capture + loop)."""
