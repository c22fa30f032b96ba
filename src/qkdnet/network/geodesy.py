"""Distances between sites on the Earth: the great-circle (haversine) distance on a sphere.

At city scale the spherical model differs from the WGS84 ellipsoid geodesic by at most ~0.5 %
(the ellipsoid's flattening, 1/298), far below the uncertainty of the site coordinates (a few
hundred metres) and of fibre route factors (1.3–1.6), so no ellipsoidal solver is needed.
"""

from __future__ import annotations

import numpy as np

#: Mean Earth radius R1 = (2a + b)/3 of WGS84, in km (IUGG; Moritz, Geodetic Reference System 1980).
EARTH_RADIUS_KM = 6371.0088


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in km between two points given in degrees (WGS84 latitude/longitude).

    >>> round(great_circle_km(45.4740, 9.1400, 45.5059, 9.2639), 1)  # Santa Barbara–San Raffaele
    10.3
    """
    return float(great_circle_matrix_km(np.array([[lat1, lon1], [lat2, lon2]]))[0, 1])


def great_circle_matrix_km(lat_lon_deg: np.ndarray) -> np.ndarray:
    """All pairwise haversine distances (km) of an ``(n, 2)`` array of (lat, lon) in degrees."""
    rad = np.radians(np.asarray(lat_lon_deg, dtype=float))
    lat, lon = rad[:, 0:1], rad[:, 1:2]
    dlat = lat - lat.T
    dlon = lon - lon.T
    h = np.sin(dlat / 2) ** 2 + np.cos(lat) * np.cos(lat.T) * np.sin(dlon / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
