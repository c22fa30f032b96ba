"""The 4-site test network shared by the runtime and dashboard tests: two relay paths
through trusted nodes t1 and t2, one link (t2--lab) under intercept-resend from the start.
Blocks of 3·10^7 pulses: large enough for a finite-size key well above the fixed per-block
costs, small enough (≈10^6 detections) to post-process in about a second."""

SQUARE_SCENARIO = """\
name: square
defaults: {block_size: 30000000, kme_base_port: 0}
sites:
  - {id: hosp, name: Hospital, sector: health, lat: 45.4589, lon: 9.1968, saes: [hosp-app]}
  - {id: t1, name: Trusted 1, sector: finance, lat: 45.4680, lon: 9.1890, trusted_node: true,
     saes: [t1-app]}
  - {id: t2, name: Trusted 2, sector: administration, lat: 45.4760, lon: 9.2150,
     trusted_node: true, saes: [t2-app]}
  - {id: lab, name: Lab, sector: research, lat: 45.4900, lon: 9.2050, saes: [lab-app]}
links:
  - {a: hosp, b: t1, hardware: decoy-1550-spad}
  - {a: t1, b: lab, hardware: decoy-1550-spad}
  - {a: hosp, b: t2, hardware: decoy-1550-spad}
  - {a: t2, b: lab, hardware: decoy-1550-spad, attack: {kind: intercept-resend, start_s: 0.0}}
"""
