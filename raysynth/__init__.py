"""raysynth: Ray-distributed search for small-data dataset synthesis."""
