"""Domain files: their format, writing, reading, statistics, batches for Keras, augmentation and low-label subsets."""
