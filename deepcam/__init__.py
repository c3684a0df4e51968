"""DeepCAM (climate segmentation) as a plug-in of the shared driver."""
