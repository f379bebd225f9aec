"""CPU vs GPU gradient speed and what a verification costs, each against the same run's ceiling."""
