"""Replicas onto nodes: exact transportation, the GPU-unit relaxation for mixed replica sizes, the
repair that turns it into whole replicas, the exact integer program for small mixed components,
and the re-plan when a voucher budget binds."""
