"""The five upstream protocols, one module each; each exports its Litestar ``ROUTES``."""
