"""The pipeline: stages declared once (stage, stages/), the plan and cache keys of a config
(graph), the runner (runner), and what a stage's run gets (context, store, resources, summary)."""
