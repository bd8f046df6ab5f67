"""Cache operations: warm, repair, rebuild, verify, vacuum, and the marks of feeds to repair."""
