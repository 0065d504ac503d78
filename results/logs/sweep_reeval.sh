#!/bin/bash
# Re-evaluates the side-run sweep points with bin/evaluate now seeding TensorFlow's global RNG
# (their first evaluation drew another CLUB training subset than bin/reproduce's evaluations).
cd /work/main
for tau in 4000 40; do
  bin/evaluate --model_dir=runs/reproduce/bpp_0.125/saic_tau_$tau --split=test --baselines= --max_images=0 --club_train_images=1000 --club_steps=2000
done
