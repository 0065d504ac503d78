"""What a trained run is worth: metrics, SI (CLUB, Eq. 11), JPEG/WebP/AVIF baselines,
bin/evaluate and bin/report."""
