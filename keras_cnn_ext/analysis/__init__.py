"""Model analysis: parameters, MACs/FLOPs, activation memory, receptive field."""
