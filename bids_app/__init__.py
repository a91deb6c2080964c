"""The dnnrsa BIDS App: command line, run configuration, workflows."""
