#!/bin/bash
# The τ sweep's extra runs at 0.125 bpp, run beside bin/reproduce (the same commands it lists in
# results/COMMANDS.md), so that the two share the 2 cores; bin/reproduce then finds them done.
cd /work/main
for tau in 4000 40; do
  bin/train --flagfile=flags/reproduce.cfg --loss=saic --tau=$tau.0 --init_from=runs/reproduce/bpp_0.125/apic --noexport --model_dir=runs/reproduce/bpp_0.125/saic_tau_$tau
  bin/evaluate --model_dir=runs/reproduce/bpp_0.125/saic_tau_$tau --split=test --baselines= --max_images=0 --club_train_images=1000 --club_steps=2000
done
