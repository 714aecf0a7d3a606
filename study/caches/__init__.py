"""Features and activations computed once per backbone and data, kept on disk."""
