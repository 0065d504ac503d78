"""Images in: the one image reader (images.py) and the datasets with their tf.data pipelines
(datasets.py)."""
