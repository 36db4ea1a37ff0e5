"""Data: caption cleaning, image transforms, annotation readers."""
