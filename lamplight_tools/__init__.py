"""The operator's tools, built on the kernel and the services: the ``lamplight``
command line (``serve``, parks, events, keys, dead letters, the points chain)
and the parks file it applies. It ships in the image; the kernel imports
nothing from here."""
