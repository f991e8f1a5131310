"""The estimator zoo's application: the ``zoo`` command, reading data files, figures and the HTML report.

It imports ``models`` and ``inference``; neither imports it.
"""
