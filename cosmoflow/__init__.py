"""CosmoFlow (3D CNN regressing four cosmological parameters from dark-matter
volumes) as a plug-in of the shared driver: ``facts`` declares it,
``benchmark`` implements it."""
