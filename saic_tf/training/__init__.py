"""Paper Algorithm 1: the resumable training loop, the codec's Keras train_step, the
downstream classifier's training (step 1) and the run of every part (trainer.py)."""
