"""Choosing among variants by measuring them, and remembering the winners on disk."""
from asp.tune.db import forget, lookup, machine_id, remembered, store
from asp.tune.tuner import Tuning, time_call

__all__ = ["Tuning", "forget", "lookup", "machine_id", "remembered", "store", "time_call"]
