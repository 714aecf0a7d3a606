"""The network: NASNet-Mobile backbone and head, weights, metrics and runtimes."""
