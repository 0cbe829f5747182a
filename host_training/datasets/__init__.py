"""The dataset format: windows and records in SeisBench's layout, cutting windows, augmentation."""
