"""Versioned data contracts. Every stage reads and writes through these."""
