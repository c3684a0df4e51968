"""DeepCAM (segmentation of climate fields into background, tropical cyclones
and atmospheric rivers) as a plug-in of the shared driver: ``facts``
declares it, ``benchmark`` implements it."""
