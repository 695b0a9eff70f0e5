"""Attacks on the service as figures (not tests): each starts `python -m service` as a real
process on localhost, runs one attack and prints what it cost.

    PYTHONPATH=$PWD python -m bench.attacks.figures --help         # the first round of attacks
    PYTHONPATH=$PWD python -m bench.attacks.figures_round2 --help  # the second round

The helpers here (server.py: run a server; images.py, stalls.py, hostile_models.py: hostile
inputs) are the service tests' too (tests/service/).
"""
