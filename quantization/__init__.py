"""Model rewriting for the node: int16 input scheme, graph simplification."""
