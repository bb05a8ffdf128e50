"""The RSU (Registre social unifié) scoring half: a household's declaration, the proxy-means
test that turns it into a socio-economic score, the programmes' versioned thresholds, the
eligibility decisions and their explanation to the citizen (:mod:`central_api.rsu.scoring`).

Pure code: no database, no network, nothing read at import. The bundled model
(``models_data/pmt-illustrative-2026.1.json``) is ILLUSTRATIVE, NOT THE OFFICIAL MODEL.
"""
