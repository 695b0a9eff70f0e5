"""Tools around training runs: moving data and weights to and from a lent GPU (shrink_voc,
shards), speed probes (speed, loader_speed) and weight averaging (average_weights)."""
