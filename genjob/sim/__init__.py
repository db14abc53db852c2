"""`genjob sim`: a discrete-event model of genjob's control loop, to size and price a deployment.

inputs.py loads the sourced data files (data/), scenario.py the scenario YAML, arrivals.py makes
the arrival times, model.py runs the simulation (SimPy), results.py summarises it, recommend.py
searches chart values, handcalc.py reproduces hand-made designs, coldstart.py compares with the
test cluster's measurements, plots.py draws, cli.py is the `genjob sim` command.
"""
