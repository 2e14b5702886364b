"""One self-contained HTML report per run: timeline, limits, output layers on a map, logs.

``model`` holds what a run looked like (local or on AWS), ``layers`` reads a scenario's GeoJSON
and OD matrices for drawing, ``html`` writes the page with plotly.
"""
