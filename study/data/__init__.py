"""Images in: data roots and their layouts, decoding, splits and augmentation."""
