"""CLUB on correlated Gaussians, where everything is known in closed form.

For y ~ N(0, I_d) and y' = ρ y + sqrt(1 − ρ²) ε, the mutual information is −½ d log(1 − ρ²) and
CLUB with the true conditional gives ρ²/(1 − ρ²) per dimension (an upper bound). Tolerance: the
estimate lies within 15 % + 0.05 nats of its closed form, and never below the true MI − 0.05.
"""
import numpy as np
import pytest

from saic_tf.evaluation import club

SETTINGS = club.ClubSettings(steps=1500, batch_size=256)


def gaussian_pairs(rho, n, dims, seed):
  rng = np.random.default_rng(seed)
  y = rng.normal(size=(n, dims))
  return y, rho * y + np.sqrt(1 - rho ** 2) * rng.normal(size=(n, dims))


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_club_on_correlated_gaussians(rho):
  dims = 2
  estimate = club.mutual_information(gaussian_pairs(rho, 4000, dims, 0),
                                     gaussian_pairs(rho, 4000, dims, 1), SETTINGS)
  true_mi = -0.5 * dims * np.log(1 - rho ** 2)
  club_value = dims * rho ** 2 / (1 - rho ** 2)
  assert estimate >= true_mi - 0.05
  assert abs(estimate - club_value) <= 0.15 * club_value + 0.05, (estimate, club_value)


def test_club_is_about_zero_for_independent_variables():
  estimate = club.mutual_information(gaussian_pairs(0.0, 4000, 3, 2),
                                     gaussian_pairs(0.0, 4000, 3, 3), SETTINGS)
  assert abs(estimate) < 0.05


@pytest.mark.slow
def test_club_increases_with_dependence():
  values = [club.mutual_information(gaussian_pairs(rho, 2000, 1, 4),
                                    gaussian_pairs(rho, 2000, 1, 5), SETTINGS)
            for rho in (0.2, 0.6, 0.9)]
  assert values[0] < values[1] < values[2]
