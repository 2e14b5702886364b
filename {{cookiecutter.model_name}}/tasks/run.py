"""Run the pipeline: on AWS, or on this machine with --local."""
