"""Field domain-shift monitoring: per-frame signals, a calibrated sequential detector, frame capture, metrics.

``atool monitor calibrate`` turns in-domain reference frames into ``monitor.json``
(signal standardisation, CUSUM threshold for a target expected run time between
false alarms, the model's sha256). ``atool monitor run`` reads a stream, runs the
model on any backend, updates the detector, writes alarm events and Prometheus
metrics and keeps the frames most worth labeling. ``atool monitor eval`` measures
detection delay and false alarms on synthetic shift streams.
"""
