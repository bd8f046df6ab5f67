"""The second front end: job definitions, single-instance runs, their records and status."""
