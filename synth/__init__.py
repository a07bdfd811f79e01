"""Deterministic sample recordings of bimanual tasks, written exactly as real robots write them."""
