"""What every stage of the pipeline shares: the UserError boundary, atomic files, the run's
configuration (config.json), distribution strategies, the run directory's layout, and a run
as the commands take it (run.py)."""
