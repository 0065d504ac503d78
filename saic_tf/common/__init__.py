"""What every stage of the pipeline shares: the UserError boundary, atomic files, the run's
configuration (config.json), distribution strategies, and the run directory's layout."""
